"""The `smoke` recipe end to end on this machine's real text (built once per session by the `smoke_run` fixture), and
what each stage promises about real data rather than synthetic strings."""

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import skip_unless

from fuxitranyu import pipeline
from fuxitranyu.recipe import load_recipe


def stage_dir(smoke_run, name):
    recipe, _ = smoke_run
    return recipe.run_dir / name


def test_every_stage_ran_and_a_second_run_does_nothing(smoke_run):
    recipe, manifests = smoke_run
    expected = [stage.name for stage in pipeline.STAGES if stage.enabled_in(recipe)]
    assert list(manifests) == expected and {"data", "mix", "pretrain", "evaluate"} <= set(expected)
    assert [item.action for item in pipeline.plan_stages(recipe) if item.action != "off"] == ["skip"] * len(expected)
    again = pipeline.run_pipeline(recipe)
    assert [m["fingerprint"] for m in again] == [manifests[name]["fingerprint"] for name in expected]


def test_an_upstream_change_reruns_what_follows_and_nothing_before(smoke_run):
    recipe, manifests = smoke_run
    changed = load_recipe("smoke", [f"output_dir={recipe.run_dir}", "tokenizer.vocab_size=1790"])
    actions = {item.stage.name: item.action for item in pipeline.plan_stages(changed) if item.action != "off"}
    assert actions["data"] == "skip"
    assert {name for name, action in actions.items() if action == "run"} == set(actions) - {"data"}
    later = load_recipe("smoke", [f"output_dir={recipe.run_dir}", "pretrain.max_lr=1e-3"])
    actions = {item.stage.name: item.action for item in pipeline.plan_stages(later) if item.action != "off"}
    assert [name for name, action in actions.items() if action == "run"] == \
        [name for name in actions if list(actions).index(name) >= list(actions).index("pretrain")]


def test_held_out_strings_never_reach_training_documents(smoke_run):
    """The held-out domains are the evaluation's and the analyses' parallel sets: none of their strings may be in
    clean/ (the model would have trained on its test set)."""
    data = stage_dir(smoke_run, "data")
    held_out = set()
    for path in (data / "parallel").glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            held_out.update(t for t in json.loads(line)["texts"].values() if len(t) > 20)
    assert len(held_out) > 300
    leaked = [line for path in (data / "clean").glob("*/*.jsonl.gz") for record in gzip.open(path, "rt")
              for line in json.loads(record)["text"].split("\n") if line in held_out]
    assert leaked == []


def test_parallel_sets_keep_to_the_recipe_languages(smoke_run):
    recipe, _ = smoke_run
    data = stage_dir(smoke_run, "data")
    seen = {language for path in (data / "parallel").glob("*.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines() for language in json.loads(line)["texts"]}
    assert seen <= set(recipe.data.languages) and len(seen) >= 8


def test_the_mix_stage_on_real_text(smoke_run):
    """Tokenized with the trained tokenizer, planned, shuffled and packed: plan.json holds the plan, every language is
    sampled within a document of its planned tokens, the shards hash as the index says, and training batches hold
    about as many languages as random draws."""
    from fuxitranyu.mix.reader import ShardReader

    recipe, manifests = smoke_run
    mix = stage_dir(smoke_run, "mix")
    plan = json.loads((mix / "plan.json").read_text())
    index = json.loads((mix / "index.json").read_text())
    assert plan["budget"] == recipe.pretrain.total_tokens and plan["strategy"] == "unimax"
    final = manifests["data"]["stats"]["final"]
    assert {row["language"] for row in plan["languages"]} == set(final)
    longest = max(row["available"] for row in plan["languages"])
    for row in plan["languages"]:
        assert abs(index["sampled_tokens"][row["language"]] - row["tokens"]) <= longest  # one document at most
    reader = ShardReader(mix, seed=recipe.seed)
    assert reader.verify() == [] and index["context_length"] == recipe.mix.context_length
    rng = np.random.default_rng(0)

    def languages_in(rows):
        return len({int(x) for row in rows for x in np.unique(row)})

    ours = [languages_in(reader.next_batch(16).languages) for _ in range(20)]
    random = [languages_in([reader._languages(i) for i in rng.choice(reader.total, 16, replace=False)])
              for _ in range(100)]
    assert np.mean(ours) > 0.85 * np.mean(random) and np.mean(random) >= 5


def test_the_tokenizer_stage_measured_fertility_on_the_parallel_sets(smoke_run):
    _, manifests = smoke_run
    fertility = manifests["tokenizer"]["stats"]["fertility"]
    assert fertility["parallel_units"] > 300 and {"fr", "zh", "ja"} <= set(fertility["per_language"])
    assert all(0.5 < value < 20 for value in fertility["per_language"].values())


def test_pretraining_on_real_text_learns_and_writes_a_servable_model(smoke_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, manifests = smoke_run
    pretrain = stage_dir(smoke_run, "pretrain")
    rows = [json.loads(line) for line in (pretrain / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "event" not in row]
    assert np.mean(losses[-8:]) < np.mean(losses[:4]) - 1.0
    assert manifests["pretrain"]["stats"]["precision"]["precision"] in ("fp32", "bf16")
    model = AutoModelForCausalLM.from_pretrained(pretrain / "model")
    tokenizer = AutoTokenizer.from_pretrained(pretrain / "model")
    ids = tokenizer("Le fichier n'existe pas", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5 or out[0, -1] == tokenizer.eos_token_id


def test_post_training_demo_data_never_shows_the_evaluation_its_test_set(smoke_run):
    """Post-training learns translation from some held-out parallel sets; the offline evaluation is cut from others.
    No target text of an evaluation item may appear in the demo conversations."""
    demo = stage_dir(smoke_run, "sft") / "demo.jsonl"
    learned = {message["content"] for line in demo.read_text(encoding="utf-8").splitlines()
               for message in json.loads(line)["messages"]}
    evaluated = set()
    for path in (stage_dir(smoke_run, "evaluate") / "data").rglob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            evaluated.update(v for v in json.loads(line).values() if isinstance(v, str) and len(v) > 15)
    assert len(learned) > 40 and len(evaluated) > 20
    assert not {text for text in learned if any(text in item for item in evaluated)}


def test_the_report_shows_every_stage_from_its_artifacts(smoke_run):
    recipe, manifests = smoke_run
    report = stage_dir(smoke_run, "report")
    page = (report / "report.html").read_text(encoding="utf-8")
    twin = (report / "report.md").read_text(encoding="utf-8")
    for title in ("Overview", "Data", "Tokenizer", "Mix", "Pretraining", "SFT", "DPO", "Evaluation", "Analyses",
                  "Recipe"):
        assert f">{title}</h2>" in page and f"## {title}" in twin, title
    assert set(manifests["report"]["stats"]["stages"]) == set(manifests) - {"report"}
    assert page.count("data:image/png;base64,") == manifests["report"]["stats"]["figures"] >= 8
    assert "src='figures/" not in page and "http" not in page.split("<body>")[1]  # self-contained
    linked = [line.split("](")[1].rstrip(")") for line in twin.splitlines() if line.startswith("![")]
    assert linked and all((report / path).is_file() for path in linked)
    final = [json.loads(line) for line in (stage_dir(smoke_run, "pretrain") / "metrics.jsonl").read_text().splitlines()
             if '"validation"' in line][-1]
    assert f"Final validation loss, mean over languages: {final['loss']:.3f}" in page


def test_the_report_renders_in_a_real_headless_browser(smoke_run, tmp_path):
    import shutil
    import subprocess

    skip_unless(bool(shutil.which("chromium") or shutil.which("chromium-browser")),
                "Debian's chromium is not installed (apt-get install chromium)")
    script = Path(__file__).parent.parent / "tools" / "screenshot-report"
    shot = tmp_path / "report.png"
    result = subprocess.run([str(script), str(stage_dir(smoke_run, "report") / "report.html"), str(shot), "3000"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from PIL import Image

    image = Image.open(shot)
    assert image.size == (1200, 3000)
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50  # a drawn page with figures, not a blank one


PAGE_MEASURES = """<script>
const tables = [...document.querySelectorAll('table')];
const images = [...document.querySelectorAll('img')];
document.body.setAttribute('data-measured', JSON.stringify({
  page: document.documentElement.scrollWidth, viewport: window.innerWidth,
  clipped_tables: tables.filter(t => t.scrollWidth > t.clientWidth + 1).map(t => t.caption && t.caption.textContent),
  shrunk_figures: images.filter(i => i.width < 0.9 * i.naturalWidth).map(i => i.alt),
  tables: tables.length, figures: images.length}));
</script></body>"""


def test_the_report_has_no_horizontal_overflow_at_1200_pixels(smoke_run, tmp_path):
    """In headless Chromium at 1200 pixels: the page does not scroll sideways, no table hides columns in a scroll
    box, and no figure is shrunk by more than 10% (its labels stay at the size they were drawn)."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    skip_unless(browser is not None, "Debian's chromium is not installed (apt-get install chromium)")
    page = tmp_path / "measured.html"
    html = (stage_dir(smoke_run, "report") / "report.html").read_text(encoding="utf-8")
    page.write_text(html.replace("</body>", PAGE_MEASURES), encoding="utf-8")
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900",
                             "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=120)
    found = re.search(r'data-measured="([^"]*)"', result.stdout)
    assert found, result.stderr[-2000:]
    measured = json.loads(found[1].replace("&quot;", '"'))
    assert measured["viewport"] == 1200 and measured["tables"] > 10 and measured["figures"] > 5
    assert measured["page"] <= 1200
    assert measured["clipped_tables"] == [] and measured["shrunk_figures"] == []


def test_a_run_killed_in_the_middle_of_a_stage_completes_with_the_same_artifacts(smoke_run, tmp_path, monkeypatch):
    """Killed at step 40, resumed: the same weights as the uninterrupted run. The bf16 probe behind `precision: auto`
    gives the reference run's answer before the kill and the other answer after it (as a machine whose load moved
    would): the resumed run must keep what it decided at its start. Temporary files of writes the kill cut short are
    not carried into the finished stage."""
    import shutil

    from safetensors.torch import load_file

    from fuxitranyu.pretrain import decisions
    from fuxitranyu.pretrain.train import Trainer

    recipe, manifests = smoke_run
    run = tmp_path / "run"
    for name in ("data", "tokenizer", "model", "mix"):
        shutil.copytree(recipe.run_dir / name, run / name)
    again = load_recipe("smoke", [f"output_dir={run}", "sft=null", "dpo=null", "evaluate=null", "analyze=null",
                                  "report=null"])
    original = Trainer.step
    reference_precision = manifests["pretrain"]["stats"]["precision"]["precision"]
    speedup = {"bf16": 3.0, "fp32": 0.5}

    def killed(self, *args):
        if self.state.step == 40:
            raise KeyboardInterrupt("killed")
        return original(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", killed)
        patch.setattr(decisions, "layer_bf16_speedup", lambda *args: speedup[reference_precision])
        with pytest.raises(KeyboardInterrupt):
            pipeline.run_pipeline(again)
    assert not (run / "pretrain").exists()
    (partial,) = run.glob(".pretrain.partial-*")
    (partial / ".metrics.jsonl.k1ll3d.tmp").write_text("half")
    (partial / "checkpoints" / ".step-000050.tmp").mkdir()
    the_other = "fp32" if reference_precision == "bf16" else "bf16"
    with monkeypatch.context() as patch:
        patch.setattr(decisions, "layer_bf16_speedup", lambda *args: speedup[the_other])
        manifest = pipeline.run_pipeline(again)[-1]
    assert manifest["stage"] == "pretrain" and manifest["stats"]["resumed"]
    assert manifest["stats"]["precision"]["precision"] == reference_precision
    assert manifest["fingerprint"] == manifests["pretrain"]["fingerprint"]
    assert not list((run / "pretrain").rglob("*.tmp"))
    ours = load_file(run / "pretrain" / "model" / "model.safetensors")
    reference = load_file(recipe.run_dir / "pretrain" / "model" / "model.safetensors")
    assert all(np.array_equal(ours[k].numpy(), reference[k].numpy()) for k in reference)


def _values(results_file: Path, model: str | None = None) -> dict[tuple[str, str, str], float]:
    rows = json.loads(results_file.read_text(encoding="utf-8"))["results"]
    return {(r["model"], r["task"], r["metric"]): r["value"] for r in rows if model in (None, r["model"])}


def test_the_command_reproduces_the_evaluate_stage_with_the_runs_recipe(smoke_run, tmp_path):
    """`fuxitranyu evaluate MODEL --recipe smoke` reads the parallel sets and settings the stage read: the same
    numbers, model by model (the chat model through its template, as the stage evaluates it)."""
    recipe, _ = smoke_run
    stage = _values(stage_dir(smoke_run, "evaluate") / "results.json")
    for model, chat in (("pretrain", []), ("dpo", ["--chat"])):
        out = tmp_path / model
        subprocess.run([sys.executable, "-m", "fuxitranyu", "evaluate", str(recipe.run_dir / model / "model"), *chat,
                        "--recipe", "smoke", "--set", f"output_dir={recipe.run_dir}", "--out", str(out)],
                       check=True, capture_output=True, text=True)
        again = _values(out / "results.json")
        assert again == {key: value for key, value in stage.items() if key[0] == model}


def test_the_stages_task_files_rerun_with_the_bare_lm_eval_cli(smoke_run, tmp_path):
    """The task files a finished stage leaves name the data where the stage's folder is (not its working folder),
    and `lm-eval run --include_path <evaluate>/tasks` on the same model (exported to a stock architecture, so that
    plain transformers loads it) gives the stage's numbers."""
    from fuxitranyu.model.export import export_checkpoint

    recipe, _ = smoke_run
    folder = stage_dir(smoke_run, "evaluate")
    naming_scratch = [p.name for p in folder.rglob("*") if p.suffix in (".yaml", ".json")
                      and ".evaluate.partial-" in p.read_text(encoding="utf-8")]
    assert naming_scratch == []
    saved = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert set(saved["task_data"].values()) == {f"files in {folder / 'data'}"}
    arguments = saved["models"]["pretrain"]["model_args"]
    exported = tmp_path / "arcee"
    export_checkpoint(recipe.run_dir / "pretrain" / "model", exported, "arcee")
    tasks = ["fuxi_bpb_fr", "fuxi_translate_mc_fr", "fuxi_translate_chrf_fr"]
    bare_cli = Path(sys.executable).parent / "lm-eval"  # the console script lm-eval installs
    subprocess.run([str(bare_cli), "run", "--include_path", str(folder / "tasks"), "--tasks", ",".join(tasks),
                    "--model", "hf", "--model_args", f"pretrained={exported},dtype={arguments['dtype']}",
                    "--device", "cpu", "--batch_size", "32", "--gen_kwargs", "max_gen_toks=8", "--seed", "1234",
                    "--output_path", str(tmp_path / "lm-eval")],
                   check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                   cwd=tmp_path)
    bare = json.loads(next((tmp_path / "lm-eval").rglob("results_*.json")).read_text(encoding="utf-8"))["results"]
    stage = _values(folder / "results.json", "pretrain")
    assert bare["fuxi_bpb_fr"]["bits_per_byte,none"] == pytest.approx(stage["pretrain", "fuxi_bpb_fr",
                                                                              "bits_per_byte"], rel=1e-5)
    assert bare["fuxi_translate_mc_fr"]["acc,none"] == pytest.approx(stage["pretrain", "fuxi_translate_mc_fr",
                                                                                   "acc"])
    assert bare["fuxi_translate_chrf_fr"]["chrf,none"] == pytest.approx(stage["pretrain", "fuxi_translate_chrf_fr",
                                                                               "chrf"])


def test_every_stage_writes_the_stats_its_readers_declare(smoke_run):
    """The report reads each stage's manifest through the typed stats the stage's package declares: the stages'
    real manifests parse, and a renamed key is an error naming it (not a blank in the page)."""
    from fuxitranyu.data.artifacts import DataStats
    from fuxitranyu.errors import FuxiError
    from fuxitranyu.evaluate.artifacts import EvaluateStats
    from fuxitranyu.posttrain.artifacts import PostTrainStats
    from fuxitranyu.pretrain.artifacts import PretrainStats
    from fuxitranyu.tokenizer.artifacts import TokenizerStats

    recipe, manifests = smoke_run
    readers = {"data": DataStats, "tokenizer": TokenizerStats, "pretrain": PretrainStats, "sft": PostTrainStats,
               "dpo": PostTrainStats, "evaluate": EvaluateStats}
    for name, reader in readers.items():
        reader.of(manifests[name], recipe.run_dir / name)
    renamed = {**manifests["pretrain"], "stats": {k if k != "tokens_per_s" else "tokens_per_second": v
                                                  for k, v in manifests["pretrain"]["stats"].items()}}
    with pytest.raises(FuxiError, match="tokens_per_s: Field required") as info:
        PretrainStats.of(renamed, recipe.run_dir / "pretrain")
    assert info.value.path == str(recipe.run_dir / "pretrain" / "manifest.json")


STAGE_LINE_BUDGET = {"data": 40, "tokenizer": 8, "model": 4, "mix": 40, "pretrain": 10, "sft": 12, "dpo": 12,
                     "evaluate": 10, "analyze": 8, "report": 4}
"""Lines a stage may leave on a 150-column terminal: its progress display, its tables and its summary lines."""
LIBRARY_NOISE = ("fatal:", "bootstrapping for stddev", "Pre-processing sequences", "it/s]", "Loading weights",
                 "Warning:", "Traceback")


def terminal_screen(command: list[str], columns: int = 150) -> list[str]:
    """The lines a user's terminal would show after `command` ran in it: a pseudo-terminal of `columns`, its output
    rendered by a terminal emulator (pyte), so that progress displays redrawn in place count once."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    import pyte

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "fuxitranyu", *command], stdin=slave, stdout=slave,
                               stderr=slave, env=env, close_fds=True)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert process.wait(timeout=600) == 0, output.decode(errors="replace")[-3000:]
    screen = pyte.HistoryScreen(columns, 50, history=100_000, ratio=0.001)
    pyte.Stream(screen).feed(output.decode("utf-8", errors="replace"))
    rows = ["".join(row[x].data for x in sorted(row)) for row in screen.history.top] + list(screen.display)
    return [row.rstrip() for row in rows if row.strip()]


def test_on_a_terminal_each_stage_shows_its_display_and_summary_not_the_libraries(tmp_path):
    """The whole smoke run on a pseudo-terminal: each stage within its line budget, and none of what the libraries
    print (tqdm bars, lm-eval's bootstrap notes, git's probe, tokenizers' bars, weight-loading bars) on screen."""
    import re

    lines = terminal_screen(["run", "smoke", "--set", f"output_dir={tmp_path / 'run'}"])
    per_stage: dict[str, int] = {}
    stage = None
    for line in lines:
        started = re.match(r"^(\w+): running into", line)
        stage = started.group(1) if started else stage
        if stage:
            per_stage[stage] = per_stage.get(stage, 0) + 1
    assert set(per_stage) == set(STAGE_LINE_BUDGET), per_stage
    over = {name: count for name, count in per_stage.items() if count > STAGE_LINE_BUDGET[name]}
    assert not over, (over, "\n".join(lines))
    noisy = [line for line in lines if any(noise in line for noise in LIBRARY_NOISE)]
    assert noisy == [], noisy
