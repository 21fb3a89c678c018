"""A hostile user's attacks on the first stages (docs/reliability.md lists the promises these tests keep).

Every failure must end in one clear line naming the file, the record and what was expected, with exit status 2 and
no traceback; nothing may hang, vanish silently, or be used after it was damaged."""

import errno
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_jsonl

from fuxitranyu import pipeline
from fuxitranyu.errors import FuxiError
from fuxitranyu.recipe import load_recipe
from fuxitranyu.stage import verify_inputs

SENTENCES = [
    "Le chat est assis sur la table et il regarde le jardin avec une grande attention tous les jours.",
    "Nous avons marché le long de la rivière pendant que le soleil se couchait derrière les collines.",
    "La bibliothèque de la ville ouvre ses portes à tous les enfants qui veulent apprendre à lire.",
]


def good_records(n: int, prefix: str) -> list[dict]:
    return [{"text": f"{SENTENCES[i % 3]} Numéro {i} de la série {prefix}.", "language": "fr", "id": f"{prefix}-{i}"}
            for i in range(n)]


def data_recipe(tmp_path: Path, paths, name="run", **data):
    settings = {"sources": [{"type": "jsonl", "paths": [str(p) for p in paths]}], "tasks": 4, "workers": 2,
                "dedup": {"enabled": False}, **data}
    return load_recipe("tiny", [f"output_dir={tmp_path / name}", f"data={json.dumps(settings)}"])


def cli(*args, timeout=180) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "fuxitranyu", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


# ------------------------------------------------------------------------------------- bad records, several workers

BAD_RECORDS = {
    "malformed_json": (b'{"text": "unterminated', "malformed JSON"),
    "invalid_utf8": (b'{"text": "ok \xff\xfe"}', "invalid UTF-8"),
    "missing_text": (b'{"body": "no text"}', "field 'text' is missing"),
    "unknown_language": (b'{"text": "bonjour tout le monde", "language": "xx"}', "unknown language code 'xx'"),
}


def corpus_with(tmp_path: Path, bad_line: bytes | None = None) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir(exist_ok=True)
    for i in range(3):
        write_jsonl(folder / f"good-{i}.jsonl", good_records(20, f"g{i}"))
    if bad_line is not None:
        lines = [json.dumps(r).encode() for r in good_records(2, "b")] + [bad_line]
        (folder / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return folder


def test_a_bad_record_under_two_workers_stops_the_cli_at_once_with_exit_2(tmp_path):
    folder = corpus_with(tmp_path, BAD_RECORDS["malformed_json"][0])
    settings = {"sources": [{"type": "jsonl", "paths": [str(folder)]}], "tasks": 4, "workers": 2}
    started = time.monotonic()
    result = cli("data", "tiny", f"--set=output_dir={tmp_path / 'run'}", f"--set=data={json.dumps(settings)}")
    assert time.monotonic() - started < 120  # used to wait forever
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{folder / 'bad.jsonl'}:3: malformed JSON" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3
    (partial,) = (tmp_path / "run").glob(".data.partial-*")  # kept for a re-run, with the detail in log files
    assert "malformed JSON" in "".join(p.read_text() for p in (partial / "logs" / "filter" / "console").iterdir())


@pytest.mark.parametrize("kind", sorted(BAD_RECORDS))
def test_every_bad_record_crosses_the_process_boundary_whole(tmp_path, kind):
    """What a worker raises is pickled to the parent: every kind of bad record must survive the trip intact."""
    import pickle

    from fuxitranyu.data.config import SourceSpec
    from fuxitranyu.data.readers import BadRecord, SourceReader

    line, message = BAD_RECORDS[kind]
    folder = corpus_with(tmp_path, line)
    with pytest.raises(BadRecord) as info:
        list(SourceReader(SourceSpec(type="jsonl", paths=[str(folder / "bad.jsonl")])).run(None))
    arrived = pickle.loads(pickle.dumps(info.value))
    assert type(arrived) is BadRecord and str(arrived) == str(info.value) and message in str(arrived)
    assert (arrived.path, arrived.record, arrived.reason) == (str(folder / "bad.jsonl"), 3, kind)


def test_a_truncated_archive_under_two_workers(tmp_path):
    folder = corpus_with(tmp_path)
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in good_records(200, "z")).encode())
    (folder / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FuxiError, match="truncated or corrupt compressed file") as info:
        pipeline.run_pipeline(data_recipe(tmp_path, [folder]), only=["data"])
    assert info.value.path.endswith("cut.jsonl.gz")


# ---------------------------------------------------------------------------------------- sources: nothing silent


def test_every_file_of_a_source_is_read_or_counted(tmp_path):
    import bz2
    import lzma

    folder = tmp_path / "mixed"
    folder.mkdir()
    text = "".join(json.dumps(r) + "\n" for r in good_records(4, "x")).encode()
    (folder / "a.ndjson").write_bytes(text)
    (folder / "b.jsonl.xz").write_bytes(lzma.compress(text.replace(b"x-", b"xz-")))
    (folder / "c.jsonl.bz2").write_bytes(bz2.compress(text.replace(b"x-", b"bz-")))
    (folder / "D.JSONL").write_bytes(text.replace(b"x-", b"upper-"))
    (folder / "README.md").write_text("not data")
    manifest = pipeline.run_pipeline(data_recipe(tmp_path, [folder], workers=1), only=["data"])[0]
    source = manifest["stats"]["steps"]["source"]
    assert source["languages"]["fr"]["read_docs"] == 16  # all four files
    assert source["skipped"] == {"unsupported_file": 1}  # README.md, counted and logged


@pytest.mark.parametrize("layout, message", [
    ("empty", "nothing to read: expected files ending in .jsonl"),
    ("other", r"found 2 other file\(s\) \(.csv, .txt\)"),
    ("glob", "no such file, directory or matching files"),
])
def test_a_source_with_nothing_to_read_is_a_clear_error(tmp_path, layout, message):
    folder = tmp_path / "source"
    folder.mkdir()
    if layout == "other":
        (folder / "a.txt").write_text("x")
        (folder / "b.csv").write_text("x")
    path = folder / "*.jsonl" if layout == "glob" else folder
    with pytest.raises(FuxiError, match=message):
        pipeline.run_pipeline(data_recipe(tmp_path, [path]), only=["data"])


def test_a_source_whose_documents_are_all_filtered_is_a_clear_error(tmp_path):
    folder = tmp_path / "short"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"text": f"Bonjour {i}.", "language": "fr"} for i in range(10)])
    with pytest.raises(FuxiError, match="no document survived the filters \\(source: read 10; "
                                        ".*dropped 10 as (too_short|few_stop_words)"):
        pipeline.run_pipeline(data_recipe(tmp_path, [folder], workers=1), only=["data"])


# --------------------------------------------------------------------------------------- storage that fails us


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "no space left on the device"),
                                           (errno.EROFS, "the file system is read-only")])
def test_storage_failures_are_clear_errors(tmp_path, monkeypatch, code, message):
    from fuxitranyu.data import stage

    def failing(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "run" / "data" / "parallel"))

    monkeypatch.setattr(stage, "write_parallel_sets", failing)
    with pytest.raises(FuxiError, match=message) as info:
        pipeline.run_pipeline(data_recipe(tmp_path, [corpus_with(tmp_path)]), only=["data"])
    assert info.value.path.endswith("parallel")


def test_a_really_full_disk_is_a_clear_error(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs privileges this machine does not grant")
    try:
        folder = corpus_with(tmp_path)
        write_jsonl(folder / "more.jsonl", good_records(600, "m"))
        settings = {"sources": [{"type": "jsonl", "paths": [str(folder)]}], "tasks": 2, "workers": 2}
        result = cli("data", "tiny", f"--set=output_dir={mount / 'run'}", f"--set=data={json.dumps(settings)}")
        assert result.returncode == 2 and "no space left on the device" in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# ------------------------------------------------------------------------------------------- one run at a time


def test_two_runs_into_one_directory(tmp_path):
    folder = corpus_with(tmp_path)
    settings = json.dumps({"sources": [{"type": "jsonl", "paths": [str(folder)]}], "tasks": 2, "workers": 1})
    command = [sys.executable, "-m", "fuxitranyu", "data", "tiny", f"--set=output_dir={tmp_path / 'run'}",
               f"--set=data={settings}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)
    second = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    results = sorted(((p.wait(timeout=180), p.stderr.read()) for p in (first, second)), key=lambda r: r[0])
    assert [code for code, _ in results] == [0, 2], results
    assert "another run is using this directory (pid" in results[1][1] and "Traceback" not in results[1][1]
    lines = [line for p in (tmp_path / "run" / "data" / "clean").glob("*/*.jsonl.gz") for line in gzip.open(p)]
    final = json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())["stats"]["final"]
    assert len(lines) == final["fr"]["docs"] > 0  # one complete output, as its manifest says, not two interleaved


def test_a_lock_left_by_a_dead_run_does_not_block(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text("pid 999999 since long ago\n")  # no process holds it
    manifest = pipeline.run_pipeline(data_recipe(tmp_path, [corpus_with(tmp_path)], workers=1), only=["data"])[0]
    assert manifest["stage"] == "data"


def process_parents() -> dict[int, int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return parents


def descendants(pid: int) -> dict[int, int]:
    """Every process below `pid`, with its depth (1: a child)."""
    parents, found, frontier, depth = process_parents(), {}, {pid}, 0
    while frontier:
        depth += 1
        frontier = {child for child, parent in parents.items() if parent in frontier} - set(found)
        found.update({child: depth for child in frontier})
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_during_the_data_stage_leaves_no_process_behind(tmp_path):
    folder = corpus_with(tmp_path)
    for i in range(8):
        write_jsonl(folder / f"bulk-{i}.jsonl", good_records(400, f"k{i}"))
    settings = json.dumps({"sources": [{"type": "jsonl", "paths": [str(folder)]}], "tasks": 8, "workers": 2})
    run = subprocess.Popen([sys.executable, "-m", "fuxitranyu", "data", "tiny", f"--set=output_dir={tmp_path / 'r'}",
                            f"--set=data={settings}"], stderr=subprocess.DEVNULL, env={**os.environ,
                                                                                        "HF_HUB_OFFLINE": "1"})
    # the task workers are grandchildren: forked by the fork server the run starts
    assert wait_until(lambda: any(depth >= 2 for depth in descendants(run.pid).values()), 180), \
        "the data stage never started its workers"
    tree = descendants(run.pid)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    workers = [pid for pid, depth in tree.items() if depth >= 2]
    assert wait_until(lambda: not any(alive(p) for p in workers), 10), "task workers outlived the run"
    # multiprocess's helpers (fork server, resource tracker, manager) notice and exit once idle
    assert wait_until(lambda: not any(alive(p) for p in tree), 90), [p for p in tree if alive(p)]


def test_parallelism_settings_do_not_change_fingerprints(tmp_path):
    base = data_recipe(tmp_path, [tmp_path], workers=1)
    fingerprints = {}
    for name, recipe in {"base": base, "workers": data_recipe(tmp_path, [tmp_path], workers=2),
                         "executor": data_recipe(tmp_path, [tmp_path], executor="ray"),
                         "tasks": data_recipe(tmp_path, [tmp_path], tasks=3)}.items():
        fingerprints[name] = [p.fingerprint for p in pipeline.plan_stages(recipe, only=["data"])][0]
    assert fingerprints["base"] == fingerprints["workers"] == fingerprints["executor"] != fingerprints["tasks"]


# ------------------------------------------------------------------------------ recipes: facts across sections


@pytest.mark.parametrize("override, message", [
    ("mix.context_length=512", "mix.context_length 512 is longer than the model's max_position_embeddings 256"),
    ("model.overrides.hidden_size=-4", "hidden_size must be a positive integer, got -4"),
    ("model.overrides.num_attention_heads=0", "num_attention_heads must be a positive integer, got 0"),
    ("mix.languages=[en, xx]", "unknown language code 'xx'"),
    ("pretrain.total_tokens=true", "expected a number, not a boolean"),
    ("pretrain.micro_batch_size=true", "expected a number, not a boolean"),
])
def test_recipe_validation_covers_cross_section_facts(override, message):
    from fuxitranyu.errors import RecipeError

    with pytest.raises(RecipeError, match=message):
        load_recipe("tiny", [override])


def test_dry_run_catches_a_bad_model_before_any_work():
    result = cli("run", "tiny", "--set", "model.overrides.hidden_size=-4", "--dry-run", timeout=60)
    assert result.returncode == 2 and "hidden_size must be a positive integer" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------- shards and caches


@pytest.fixture
def toy(tmp_path):
    from test_pretrain import toy_recipe, toy_run

    model_dir, mix_dir = toy_run(tmp_path)
    return toy_recipe(tmp_path), model_dir, mix_dir


def trainer(toy, out: Path):
    from fuxitranyu.pretrain.train import Trainer

    recipe, model_dir, mix_dir = toy
    out.mkdir(exist_ok=True)
    return Trainer(recipe, model_dir, mix_dir, out)


def test_a_shard_changed_in_place_is_refused(toy, tmp_path):
    shard = next((toy[2] / "shards").glob("*.npy"))
    array = np.load(shard)
    array[0, 0] = (array[0, 0] + 1) % 60 + 1  # same size, other content
    np.save(shard, array)
    with pytest.raises(FuxiError, match="sha256 .* differs from the mix's index.json") as info:
        trainer(toy, tmp_path / "out")
    assert info.value.path == str(shard)


def test_a_truncated_or_missing_shard_is_refused(toy, tmp_path):
    shards = sorted((toy[2] / "shards").glob("*.npy"))
    shards[0].write_bytes(shards[0].read_bytes()[:-100])
    with pytest.raises(FuxiError, match="shard truncated: .* bytes, the index says"):
        trainer(toy, tmp_path / "out")
    shards[0].unlink()
    with pytest.raises(FuxiError, match="missing; rebuild the mix"):
        trainer(toy, tmp_path / "out")


def test_a_damaged_token_cache_is_rebuilt_not_used(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from fuxitranyu.mix.build import tokenize_language, verified_cache

    texts = [f"{SENTENCES[i % 3]} {i}" for i in range(30)]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300))
    folder, dtype = tmp_path / "cache", np.dtype(np.uint16)
    counts = tokenize_language(iter(texts), backend, dtype, folder, "fr", 8)
    assert verified_cache(folder, "fr", dtype) == counts and counts[1] > 300
    data = (folder / "fr.bin").read_bytes()
    (folder / "fr.bin").write_bytes(data[:-10])
    assert verified_cache(folder, "fr", dtype) is None  # truncated: the caller tokenizes again
    (folder / "fr.bin").write_bytes(data[:-2] + bytes([data[-2] ^ 1, data[-1]]))  # same size, other content
    assert verified_cache(folder, "fr", dtype) is None


def test_a_cut_metrics_line_does_not_break_a_resume(tmp_path):
    from test_pretrain import kill_at_step, losses, train

    train(tmp_path, "reference")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "out", patch=kill_at_step(15))
    with open(tmp_path / "out" / "metrics.jsonl", "a") as f:
        f.write('{"step": 16, "loss": 3.1')  # what a kill in the middle of a write leaves
    train(tmp_path, "out", resume=True)
    assert losses(tmp_path / "out") == losses(tmp_path / "reference")


# ------------------------------------------------------------------------- hashes written are hashes checked


@pytest.fixture
def finished_stages(tmp_path):
    """The tokenizer and model stages of a tiny run, finished, with their manifests."""
    corpus = tmp_path / "docs.jsonl"
    write_jsonl(corpus, [{"text": f"{SENTENCES[i % 3]} {i}", "language": "fr"} for i in range(40)])
    recipe = load_recipe("tiny", [f"output_dir={tmp_path / 'run'}", f"tokenizer.inputs=[{corpus}]",
                                  "tokenizer.vocab_size=382"])
    pipeline.run_pipeline(recipe, only=["tokenizer", "model"])
    return recipe


@pytest.mark.parametrize("damage", ["tokenizer/tokenizer.json", "model/model.safetensors", "model/config.json"])
def test_a_stage_refuses_an_input_file_changed_since_its_stage_hashed_it(finished_stages, damage):
    path = finished_stages.run_dir / damage
    manifest = json.loads((path.parents[len(Path(damage).parts) - 2] / "manifest.json").read_text())
    assert Path(damage).name in manifest["files"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    path.write_bytes(bytes(data))
    stage = Path(damage).parts[0]
    with pytest.raises(FuxiError, match=f"changed since the {stage} stage wrote it.*fuxitranyu run --from {stage}") \
            as info:
        if stage == "tokenizer":  # end to end: the model stage reads the tokenizer
            pipeline.run_pipeline(finished_stages, only=["model"], force=True)
        else:  # what the pipeline does before pretraining reads the model stage
            verify_inputs({"model": finished_stages.run_dir / "model"})
    assert info.value.path == str(path)


# --------------------------------------------------------------------- every bad argument: one line, exit 2


def run_in_process(capsys, *args) -> tuple[int, str]:
    from fuxitranyu.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code, " ".join(capsys.readouterr().err.split())


def test_bad_arguments_are_one_clear_line_with_exit_2(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    parallel = tmp_path / "set.jsonl"
    parallel.write_text(json.dumps({"id": "u", "texts": {"en": "file not found", "fr": "fichier introuvable"}}) + "\n")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hello"}) + "\n" + json.dumps({"prompt": "  "}) + "\n")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\npretrain:\n  max_lr: [1, 2\n  batch: 3\n")
    cases = [
        (["run", "tiny", "--set", f"output_dir={a_file}"], f"{a_file}: not usable as a run directory: {a_file} is a "
                                                            f"file"),
        (["run", "tiny", "--set", f"output_dir={a_file / 'sub'}"], f"{a_file} is a file"),
        (["evaluate", str(tmp_path / "no-model"), "--parallel", str(parallel)],
         "no-model: no such model directory, and no model of that name in the Hugging Face cache"),
        (["evaluate", str(model), "--parallel", str(tmp_path / "none.jsonl")], "none.jsonl: no such parallel set"),
        (["evaluate", str(model), "--limit", "0"], "Invalid value for '--limit'"),
        (["generate", str(model), "--prompts", str(prompts)], f"{prompts}:2: an empty prompt"),
        (["generate", str(model), "--prompts", str(prompts), "--max-new-tokens", "0"],
         "Invalid value for '--max-new-tokens'"),
        (["run", str(bad_yaml), "--dry-run"], f"{bad_yaml}:4:8: not valid YAML: while parsing a flow sequence"),
        (["experiment", "adapt", "--arm-tokens", "lots", "--output", str(tmp_path / "adapt")],
         "--arm-tokens: expected a count such as 4096, 2Mi, 606B or 1.5e9, got 'lots'"),
        (["experiment", "adapt", "--replay", "1.5"], "Invalid value for '--replay'"),
        (["experiment", "adapt", "--new-rows", "focus", "--output", str(tmp_path / "adapt")],
         "--new-rows: expected mean and/or random, got focus"),
        (["experiment", "adapt", "--set", "data.languages=[en, fr]", "--output", str(tmp_path / "adapt")],
         "must hold some of the base languages"),
    ]
    for args, message in cases:
        code, printed = run_in_process(capsys, *args)
        assert code == 2 and message in printed and "Traceback" not in printed, (args, printed)


# ------------------------------------------------------------------------- sources: every entry accounted for


def test_hidden_files_dangling_links_and_empty_files_are_counted_not_silent(tmp_path):
    folder = corpus_with(tmp_path)
    (folder / ".notes.jsonl").write_text(json.dumps(good_records(1, "h")[0]) + "\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "x.jsonl").write_text(json.dumps(good_records(1, "g")[0]) + "\n")
    (folder / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "blank.jsonl.gz").write_bytes(gzip.compress(b"\n\n"))
    manifest = pipeline.run_pipeline(data_recipe(tmp_path, [folder], workers=1), only=["data"])[0]
    source = manifest["stats"]["steps"]["source"]
    assert source["skipped"] == {"hidden_file": 2, "dangling_symlink": 1, "empty_file": 2}
    assert source["languages"]["fr"]["read_docs"] == 60  # the three good files, nothing else


def test_a_parquet_file_with_damaged_pages_is_a_clear_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "parquet"
    folder.mkdir()
    path = folder / "docs.parquet"
    pq.write_table(pa.table({"text": [r["text"] for r in good_records(3000, "p")], "language": ["fr"] * 3000}),
                   path, row_group_size=1000)
    column = pq.ParquetFile(path).metadata.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    for i in range(column.data_page_offset + 40, column.data_page_offset + 240):
        data[i] ^= 0x5A  # inside the pages; the footer stays valid
    path.write_bytes(bytes(data))
    settings = {"sources": [{"type": "parquet", "paths": [str(folder)]}], "tasks": 1, "workers": 1,
                "dedup": {"enabled": False}}
    recipe = load_recipe("tiny", [f"output_dir={tmp_path / 'run'}", f"data={json.dumps(settings)}"])
    with pytest.raises(FuxiError, match="damaged Parquet data after row") as info:
        pipeline.run_pipeline(recipe, only=["data"])
    assert info.value.path == str(path)
