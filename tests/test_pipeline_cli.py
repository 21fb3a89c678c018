import json
import subprocess
import sys

import pytest

from fuxitranyu import pipeline
from fuxitranyu.cli import main
from fuxitranyu.recipe import load_recipe


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fuxitranyu", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def corpus(tmp_path_factory):
    """A tiny JSONL corpus for the tokenizer stage, so the model stage has a tokenizer to size its vocabulary."""
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    lines = [{"text": f"Document number {i}: the quick brown fox jumps over the lazy dog.", "language": "en"}
             for i in range(50)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def tiny(output_dir, corpus, *overrides):
    return load_recipe("tiny", [f"output_dir={output_dir}", f"tokenizer.inputs=[{corpus}]", *overrides])


MODEL = ["tokenizer", "model"]


def test_run_writes_manifest_and_skips_when_current(tmp_path, corpus):
    recipe = tiny(tmp_path, corpus)
    first = pipeline.run_pipeline(recipe, only=MODEL)
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest == first[1] and manifest["inputs"] == {"tokenizer": first[0]["fingerprint"]}
    assert manifest["stats"]["parameters"] == 2_889_344
    assert manifest["config"]["model"]["preset"] == "tiny" and manifest["versions"]["torch"].startswith("2.13")
    mtime = (tmp_path / "model" / "model.safetensors").stat().st_mtime_ns
    assert [p.action for p in pipeline.plan_stages(recipe, only=["model"])] == ["skip"]
    pipeline.run_pipeline(recipe, only=["model"])
    assert (tmp_path / "model" / "model.safetensors").stat().st_mtime_ns == mtime

    changed = tiny(tmp_path, corpus, "model.overrides.num_hidden_layers=2")
    assert [p.action for p in pipeline.plan_stages(changed, only=["model"])] == ["run"]
    assert [p.action for p in pipeline.plan_stages(recipe, only=["model"], force=True)] == ["run"]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, corpus):
    hashes = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        recipe = tiny(tmp_path / name, corpus, f"seed={seed}")
        hashes[name] = pipeline.run_pipeline(recipe, only=MODEL)[1]["stats"]["weights"]["model.safetensors"]
    assert hashes["a"] == hashes["b"] != hashes["c"]


def test_failed_stage_leaves_previous_output_intact(tmp_path, monkeypatch, corpus):
    recipe = tiny(tmp_path, corpus)
    pipeline.run_pipeline(recipe, only=MODEL)
    before = (tmp_path / "model" / "manifest.json").read_text()

    def explode(ctx):
        (ctx.out_dir / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    broken = pipeline.Stage("model", sections=("model",), needs=(), run=explode)
    monkeypatch.setattr(pipeline, "STAGES", (broken,))
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(recipe, only=["model"], force=True)
    assert (tmp_path / "model" / "manifest.json").read_text() == before
    partial = [p for p in tmp_path.iterdir() if p.name not in MODEL and p.name not in (".lock", "logs")]
    assert len(partial) == 1 and partial[0].name.startswith(".model.partial-")  # kept for a resume, hidden

    calls = []

    def resume(ctx):
        calls.append(sorted(p.name for p in ctx.out_dir.iterdir()))
        return {}

    monkeypatch.setattr(pipeline, "STAGES", (pipeline.Stage("model", sections=("model",), needs=(), run=resume),))
    pipeline.run_pipeline(recipe, only=["model"], force=True)
    assert calls == [["model.safetensors"]]  # the re-run found the interrupted run's files
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in (".lock", "logs")) == MODEL[::-1]


def test_unknown_stage_is_a_clear_error(tmp_path):
    with pytest.raises(pipeline.FuxiError, match="unknown stage .nope.; stages: data, .*model"):
        pipeline.plan_stages(load_recipe("tiny", [f"output_dir={tmp_path}"]), only=["nope"])


def test_cli_user_errors_exit_2_without_traceback(tmp_path):
    result = run_cli("run", "tiny", "--set", "pretrain.max_lrr=1")
    assert result.returncode == 2
    assert "unknown key 'pretrain.max_lrr'" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("run", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "no recipe file" in result.stderr
    result = run_cli("export", str(tmp_path), str(tmp_path / "out"), "--to", "arcee")
    assert result.returncode == 2 and "config.json is missing" in result.stderr and "Traceback" not in result.stderr


HELP_PATHS = [["--help"], ["run", "--help"], ["analyze", "--help"], ["evaluate", "m", "--limit", "0"],
              ["run", "tiny", "--set", "pretrain.max_lrr=1"], ["run", "tiny", "--set", "pretrain.max_lr=fast"]]
HEAVY = ("torch", "transformers", "lm_eval", "trl", "datatrove", "datasets")


def test_help_and_bad_arguments_load_no_heavy_library():
    """`--help`, a bad argument and a bad recipe key answer without torch, transformers, lm-eval, TRL, datatrove or
    datasets: what made the command line take 11-17 s to print one line (benchmarks/bench_cli.py times it)."""
    script = f"""
import sys
from fuxitranyu.cli import main
for argv in {HELP_PATHS!r}:
    try:
        main(argv)
    except SystemExit:
        pass
print("LOADED", sorted(name for name in {HEAVY!r} if name in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "LOADED []", result.stdout[-2000:] + result.stderr[-2000:]
    assert "unknown key 'pretrain.max_lrr'" in result.stderr and "Invalid value for '--limit'" in result.stderr


def in_process(*args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    assert info.value.code == 0


def test_cli_model_info_and_dry_run(capsys, tmp_path):
    in_process("model", "info", "fuxitranyu-8b", "--world-size", "32")
    printed = capsys.readouterr().out
    assert "8,095,313,920 (8.10B)" in printed and "2,054,160,384" in printed
    in_process("run", "tiny", "--set", f"output_dir={tmp_path}", "--dry-run")
    printed = capsys.readouterr().out
    assert "name: tiny" in printed
    for stage in ("data", "tokenizer", "model", "mix", "pretrain"):
        assert f"# {stage}: run -> {tmp_path / stage}" in printed
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", [[], ["run"], ["recipe"], ["recipe", "show"], ["recipe", "docs"], ["model"],
                                     ["model", "info"], ["model", "presets"], ["export"], ["data"], ["fetch"],
                                     ["build-kenlm"], ["tokenizer"], ["tokenizer", "train"],
                                     ["tokenizer", "fertility"], ["mix"], ["mix", "plan"], ["mix", "build"],
                                     ["pretrain"]])
def test_every_command_has_help(command, capsys):
    in_process(*command, "--help")
    assert "Usage: fuxitranyu" in capsys.readouterr().out


def test_cli_run_then_export_round_trip(tmp_path, corpus):
    result = run_cli("run", "tiny", "--set", f"output_dir={tmp_path}", "--set", f"tokenizer.inputs=[{corpus}]",
                     "--only", "tokenizer", "--only", "model")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("export", str(tmp_path / "model"), str(tmp_path / "arcee"), "--to", "arcee")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "arcee" / "config.json").read_text())["architectures"] == ["ArceeForCausalLM"]
