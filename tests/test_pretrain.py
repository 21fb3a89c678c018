import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fuxitranyu.errors import FuxiError
from fuxitranyu.mix.build import pack
from fuxitranyu.mix.config import MixSection
from fuxitranyu.mix.plan import plan_mix
from fuxitranyu.pretrain import schedule
from fuxitranyu.pretrain.config import PretrainSection
from fuxitranyu.recipe import load_recipe

CONTEXT = 16
VOCAB = 64


# --------------------------------------------------------------------------------------------------------- schedule


def test_learning_rate_schedule_by_hand():
    recipe = PretrainSection(total_tokens=1000, max_lr=1.0, min_lr_ratio=0.1, warmup_tokens=100,
                            lr_changes=[{"at_tokens": 550, "max_lr": 0.5}], batch=[{"from_tokens": 0,
                                                                                    "batch_tokens": 4}])
    lr = lambda tokens, scale=1.0: schedule.learning_rate(tokens, recipe, scale)  # noqa: E731
    assert lr(0) == pytest.approx(1 / 100) and lr(49) == pytest.approx(0.5)
    assert lr(100) == pytest.approx(1.0)  # end of warmup: the peak
    assert lr(325) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lr(549) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 449 / 900)))
    assert lr(550) == pytest.approx(0.5 * (0.1 + 0.9 * 0.5))  # the new peak, cosine phase kept (halfway)
    assert lr(1000) == pytest.approx(0.05) and lr(5000) == pytest.approx(0.05)  # floor: 10% of the new peak
    assert lr(550, 0.5) == pytest.approx(0.25 * (0.1 + 0.9 * 0.5))


def test_batch_ramp_and_checkpoint_times():
    recipe = PretrainSection(total_tokens=1000,
                            batch=[{"from_tokens": 0, "batch_tokens": 8}, {"from_tokens": 240, "batch_tokens": 16}],
                            checkpoints=[{"from_tokens": 0, "every_tokens": 50}, {"from_tokens": 300,
                                                                                  "every_tokens": 200}])
    assert [schedule.batch_tokens(t, recipe) for t in (0, 239, 240, 999)] == [8, 8, 16, 16]
    due = [t for t in range(0, 1000, 8) if schedule.checkpoint_due(t, t + 8, recipe)]
    assert due == [48, 96, 144, 192, 248, 296, 496, 696, 896, 992]  # every 50 to 300, then every 200, and the end


def test_pretrain_recipe_errors():
    from fuxitranyu.errors import RecipeError

    with pytest.raises(RecipeError, match="batch_tokens 100 is not a multiple of mix.context_length 256"):
        load_recipe("tiny", ["pretrain.batch=[{from_tokens: 0, batch_tokens: 100}]"])
    with pytest.raises(RecipeError, match="lr_changes: at_tokens 5000000 is not before total_tokens"):
        load_recipe("tiny", ["pretrain.lr_changes=[{at_tokens: 5M, max_lr: 1e-4}]"])


# ------------------------------------------------------------------------------------------------------ a tiny run


def toy_run(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny model and a learnable mix: counting sequences (each token is the previous one plus a stride)."""
    from fuxitranyu.model import preset_config
    from fuxitranyu.model.modeling import FuxiTranyuForCausalLM

    model_dir, mix_dir = tmp_path / "model", tmp_path / "mix"
    if not model_dir.exists():
        config = preset_config("tiny", vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, max_position_embeddings=64)
        torch.manual_seed(0)
        FuxiTranyuForCausalLM(config).save_pretrained(model_dir)
        rng = np.random.default_rng(0)
        tokens = tmp_path / "tokens"
        tokens.mkdir()
        for language, stride in (("en", 1), ("fr", 3)):
            docs = [(rng.integers(1, VOCAB) + stride * np.arange(rng.integers(8, 40))) % (VOCAB - 1) + 1
                    for _ in range(300)]
            np.concatenate(docs).astype(np.uint16).tofile(tokens / f"{language}.bin")
            np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64).tofile(
                tokens / f"{language}.idx")
        available = {lang: int((np.diff(np.fromfile(tokens / f"{lang}.idx", dtype=np.int64)) + 1).sum())
                     for lang in ("en", "fr")}
        plan = plan_mix(available, MixSection(strategy="proportional"), sum(available.values()))
        pack(plan, tokens, mix_dir, CONTEXT, 0, VOCAB, 64, 0)
    return model_dir, mix_dir


def toy_recipe(tmp_path, *overrides):
    base = [f"output_dir={tmp_path}", f"mix.context_length={CONTEXT}", "pretrain.total_tokens=2560",
            "pretrain.batch=[{from_tokens: 0, batch_tokens: 64}, {from_tokens: 1280, batch_tokens: 128}]",
            "pretrain.micro_batch_size=2", "pretrain.max_lr=3e-3", "pretrain.warmup_tokens=128",
            "pretrain.checkpoints=[{from_tokens: 0, every_tokens: 640}]", "pretrain.peak_flops=1e11",
            "pretrain.precision=fp32"]
    return load_recipe("tiny", base + list(overrides))


def train(tmp_path, out_name="out", *overrides, resume=False, patch=None):
    from fuxitranyu.pretrain.train import Trainer

    model_dir, mix_dir = toy_run(tmp_path)
    out = tmp_path / out_name
    out.mkdir(exist_ok=True)
    trainer = Trainer(toy_recipe(tmp_path, *overrides), model_dir, mix_dir, out)
    if patch:
        patch(trainer)
    if resume:
        assert trainer.resume()
    return trainer, trainer.train()


def losses(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r and "event" not in r]


def test_loss_decreases_and_metrics_are_complete(tmp_path):
    _, stats = train(tmp_path, "out", "pretrain.total_tokens=6400")
    curve = [loss for _, loss in losses(tmp_path / "out")]
    assert stats["tokens"] >= 6400 and len(curve) == stats["steps"]
    assert np.mean(curve[-5:]) < np.mean(curve[:3]) - 1.0, curve
    row = json.loads((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(row["loss_by_language"]) == {"en", "fr"}
    assert row["loss_by_language"]["en"] < row["loss_by_language"]["fr"] + 2  # both learned, both reported
    assert {"lr", "grad_norm", "tokens_per_s", "mfu", "batch_tokens"} <= set(row)
    assert row["batch_tokens"] == 128  # after the ramp
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "out" / "tensorboard")).Reload()
    assert [e.value for e in board.Scalars("train/loss")] == pytest.approx(curve)
    assert {"loss_by_language/en", "loss_by_language/fr"} <= set(board.Tags()["scalars"])


def test_checkpoint_loads_with_auto_classes(tmp_path):
    from transformers import AutoModelForCausalLM

    from fuxitranyu.pretrain.checkpoint import describe, list_checkpoints

    trainer, _ = train(tmp_path)
    saved = [describe(path) for path in list_checkpoints(tmp_path / "out" / "checkpoints")]
    assert [c.tokens for c in saved] == [640, 1280, 1920, 2560]
    model = AutoModelForCausalLM.from_pretrained(saved[-1].path)
    assert type(model).__name__ == "FuxiTranyuForCausalLM"
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, trainer.model.state_dict()[name]), name


def test_kill_and_resume_gives_the_same_loss_curve(tmp_path):
    train(tmp_path, "reference")

    def die_at_step_27(trainer):
        original = trainer.step

        def step(*args):
            if trainer.state.step == 27:
                raise KeyboardInterrupt("killed")
            return original(*args)

        trainer.step = step

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "resumed", patch=die_at_step_27)
    assert losses(tmp_path / "resumed")[-1][0] == 27
    train(tmp_path, "resumed", resume=True)
    assert losses(tmp_path / "resumed") == losses(tmp_path / "reference")


def kill_at_step(step: int):
    def patch(trainer):
        original = trainer.step

        def dying(*args):
            if trainer.state.step == step:
                raise KeyboardInterrupt("killed")
            return original(*args)

        trainer.step = dying

    return patch


def test_resume_from_a_sharded_checkpoint(tmp_path):
    train(tmp_path, "reference")
    small_shards = "pretrain.checkpoint_max_shard_size=20KB"
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "sharded", small_shards, patch=kill_at_step(25))
    checkpoint = tmp_path / "sharded" / "checkpoints" / "step-000020"
    assert (checkpoint / "model.safetensors.index.json").is_file() and not (checkpoint / "model.safetensors").exists()
    assert len(list(checkpoint.glob("model-*-of-*.safetensors"))) > 2
    train(tmp_path, "sharded", small_shards, resume=True)
    assert losses(tmp_path / "sharded") == losses(tmp_path / "reference")


def test_corrupt_checkpoints_are_set_aside_and_the_previous_one_used(tmp_path):
    from fuxitranyu.pretrain.checkpoint import list_checkpoints

    train(tmp_path, "reference")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "out", patch=kill_at_step(24))
    folder = tmp_path / "out" / "checkpoints"
    weights = folder / "step-000020" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside a tensor
    weights.write_bytes(bytes(data))
    trainer, _ = train(tmp_path, "out", resume=True)
    events = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
              if '"event"' in line]
    corrupt = [e for e in events if e["event"] == "corrupt_checkpoint"]
    assert len(corrupt) == 1 and corrupt[0]["checkpoint"] == "step-000020" and "hash" in corrupt[0]["error"]
    assert [e["checkpoint"] for e in events if e["event"] == "resumed"] == ["step-000010"]
    assert (folder / "corrupt" / "step-000020" / "model.safetensors").read_bytes() == bytes(data)  # kept, aside
    assert [p.name for p in list_checkpoints(folder)][:2] == ["step-000010", "step-000020"]  # step 20 written anew
    assert losses(tmp_path / "out") == losses(tmp_path / "reference")


def test_a_checkpoint_holding_nan_weights_is_never_restored(tmp_path):
    from safetensors.torch import load_file, save_file

    from fuxitranyu.io import file_sha256
    from fuxitranyu.pretrain.checkpoint import DESCRIPTION

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "out", patch=kill_at_step(15))
    checkpoint = tmp_path / "out" / "checkpoints" / "step-000010"
    state = load_file(checkpoint / "model.safetensors")
    state["lm_head.weight"][0, 0] = float("nan")
    save_file(state, checkpoint / "model.safetensors", metadata={"format": "pt"})
    description = json.loads((checkpoint / DESCRIPTION).read_text())  # the hashes agree: saved that way
    description["files"]["model.safetensors"] = file_sha256(checkpoint / "model.safetensors")
    (checkpoint / DESCRIPTION).write_text(json.dumps(description))
    from fuxitranyu.pretrain.train import Trainer

    model_dir, mix_dir = toy_run(tmp_path)
    trainer = Trainer(toy_recipe(tmp_path), model_dir, mix_dir, tmp_path / "out")
    assert not trainer.resume()  # the only checkpoint was set aside
    assert (tmp_path / "out" / "checkpoints" / "corrupt" / "step-000010").is_dir()


def test_kill_during_checkpoint_save_is_survived(tmp_path, monkeypatch):
    from fuxitranyu.pretrain import checkpoint

    real_save = torch.save
    calls = []

    def dying_save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"half a file")
            raise KeyboardInterrupt("killed while saving")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "out")
    folder = tmp_path / "out" / "checkpoints"
    assert [p.name for p in checkpoint.list_checkpoints(folder)] == ["step-000010"]
    assert (folder / ".step-000020.tmp").exists()  # the half-written one is not listed
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    train(tmp_path, "reference")
    train(tmp_path, "out", resume=True)
    assert losses(tmp_path / "out") == losses(tmp_path / "reference")


def test_a_resumed_run_keeps_the_decisions_of_its_first_start(tmp_path, monkeypatch):
    """precision auto: at the first start the bf16 probe says bf16 pays (so bf16 with the matmul kernel); after the
    kill, under another load, it says it does not. The resumed run keeps bf16 and its kernel without probing again,
    and ends on the uninterrupted run's curve; a new run would have decided fp32."""
    from fuxitranyu import runtime
    from fuxitranyu.pretrain import decisions
    from fuxitranyu.pretrain import train as train_module

    monkeypatch.setattr(runtime, "cpu_has_bf16_unit", lambda: True)
    answer = {"speedup": 2.0, "probes": 0}

    def probe(*args):
        answer["probes"] += 1
        return answer["speedup"]

    monkeypatch.setattr(decisions, "layer_bf16_speedup", probe)
    auto = "pretrain.precision=auto"
    reference, _ = train(tmp_path, "reference", auto)
    assert reference.runtime.precision.name == "bf16" and reference.attention.value == "matmul"
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "resumed", auto, patch=kill_at_step(13))
    answer.update(speedup=0.5, probes=0)
    resumed, _ = train(tmp_path, "resumed", auto, resume=True)
    assert answer["probes"] == 0 and resumed.decisions.reused == {"precision", "host_memory", "attention", "compile",
                                                                  "peak_flops"}
    assert resumed.runtime.precision.name == "bf16" and resumed.model.config._attn_implementation == "fuxitranyu_matmul"
    assert losses(tmp_path / "resumed") == losses(tmp_path / "reference")
    model_dir, mix_dir = toy_run(tmp_path)
    (tmp_path / "fresh").mkdir()
    fresh = train_module.Trainer(toy_recipe(tmp_path, auto), model_dir, mix_dir, tmp_path / "fresh")
    assert answer["probes"] == 1 and fresh.runtime.precision.name == "fp32" and fresh.attention.value == "sdpa"
    recorded = json.loads((tmp_path / "resumed" / "decisions.json").read_text())
    assert recorded["precision"]["value"] == "bf16" and "2.0x" in recorded["precision"]["reason"]
    with pytest.raises(FuxiError, match="precision: this run started with 'bf16'.*now asks for 'fp32'"):
        train_module.Trainer(toy_recipe(tmp_path, "pretrain.precision=fp32"), model_dir, mix_dir,
                             tmp_path / "resumed")


def test_a_pickle_planted_in_a_checkpoint_is_refused_and_never_run(tmp_path):
    """A run directory copied from someone else: training_state.pt rewritten to run a command when unpickled, and
    checkpoint.json's hash rewritten with it. Resuming refuses the file with a clear message and runs nothing."""
    from fuxitranyu.io import file_sha256
    from fuxitranyu.pretrain.checkpoint import DESCRIPTION, STATE
    from fuxitranyu.pretrain.train import Trainer

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "out", patch=kill_at_step(15))
    checkpoint = tmp_path / "out" / "checkpoints" / "step-000010"
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    state = torch.load(checkpoint / STATE, weights_only=True)
    state["train"]["note"] = Payload()
    torch.save(state, checkpoint / STATE)
    description = json.loads((checkpoint / DESCRIPTION).read_text())
    description["files"][STATE] = file_sha256(checkpoint / STATE)
    (checkpoint / DESCRIPTION).write_text(json.dumps(description))
    model_dir, mix_dir = toy_run(tmp_path)
    trainer = Trainer(toy_recipe(tmp_path), model_dir, mix_dir, tmp_path / "out")
    with pytest.raises(FuxiError, match="refused: the training state holds a pickled object \\(it asks to run "
                                        "posix.system\\).*nothing in it ran") as refused:
        trainer.resume()
    assert refused.value.path == str(checkpoint / STATE) and not marker.exists()
    torch.load(checkpoint / STATE, weights_only=False)  # the payload is real: a plain load runs it
    assert marker.exists()


def test_fp16_resumes_with_the_loss_scale_it_had_reached(tmp_path):
    """fp16 trains with a GradScaler whose scale moves during a run; a resume must continue with it, not restart at
    2**16 (a scale of 2**10 stands in for one lowered after overflows)."""
    fp16 = "pretrain.precision=fp16"

    def lowered_scale(trainer):
        trainer.scaler.load_state_dict({**trainer.scaler.state_dict(), "scale": 1024.0})
        kill_at_step(15)(trainer)

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "out", fp16, patch=lowered_scale)
    from fuxitranyu.pretrain.checkpoint import STATE

    saved = torch.load(tmp_path / "out" / "checkpoints" / "step-000010" / STATE, weights_only=True)
    assert saved["scaler"]["scale"] == 1024.0
    from fuxitranyu.pretrain.train import Trainer

    model_dir, mix_dir = toy_run(tmp_path)
    trainer = Trainer(toy_recipe(tmp_path, fp16), model_dir, mix_dir, tmp_path / "out")
    assert trainer.scaler.get_scale() == 65536.0 and trainer.resume() and trainer.scaler.get_scale() == 1024.0


def test_a_run_killed_before_its_first_checkpoint_logs_each_step_once(tmp_path):
    train(tmp_path, "reference")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "out", patch=kill_at_step(6))  # the first checkpoint is at step 10
    with (tmp_path / "out" / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"step": 7, "loss": 3.1')  # a line cut short by the kill
    from fuxitranyu.pretrain.train import Trainer

    model_dir, mix_dir = toy_run(tmp_path)
    trainer = Trainer(toy_recipe(tmp_path), model_dir, mix_dir, tmp_path / "out")
    assert not trainer.resume()
    trainer.train()
    steps = [step for step, _ in losses(tmp_path / "out")]
    assert steps == sorted(set(steps)) and losses(tmp_path / "out") == losses(tmp_path / "reference")


def plant_loss_factor(at_calls: set[int], factor: float):
    """Multiply the loss (its sum and the per-token losses) of the given forward calls (1-based) by `factor`: NaN or
    a spike."""
    def patch(trainer):
        original = trainer.wrapper.forward
        counter = {"calls": 0}

        def forward(*args):
            counter["calls"] += 1
            total, losses = original(*args)
            return (total * factor, losses * factor) if counter["calls"] in at_calls else (total, losses)

        trainer.wrapper.forward = forward

    return patch


def plant_nan(at_calls: set[int]):
    return plant_loss_factor(at_calls, float("nan"))


def test_planted_nan_rolls_back_with_a_lower_lr_and_recovers(tmp_path):
    # 2 micro-batches per step early on: forward call 25 is in step 13, after the checkpoint at step 10.
    trainer, stats = train(tmp_path, "out", patch=plant_nan({25}))
    events = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
              if '"event"' in line]
    assert [e["event"] for e in events] == ["rollback"] and events[0]["to"] == "step-000010"
    assert stats["rollbacks"] == 1 and trainer.state.lr_scale == 0.5
    assert stats["tokens"] >= 2560 and all(math.isfinite(loss) for _, loss in losses(tmp_path / "out"))


def test_planted_nan_is_skipped_and_repeated_divergence_gives_up(tmp_path):
    _, stats = train(tmp_path, "skip", "pretrain.divergence.action=skip", patch=plant_nan({3}))
    assert stats["skipped_steps"] == 1 and stats["rollbacks"] == 0
    with pytest.raises(FuxiError, match="diverged 3 times in a row"):
        train(tmp_path, "dead", "pretrain.divergence.action=skip", "pretrain.divergence.max_retries=2",
              patch=plant_nan(set(range(1, 1000))))


# ------------------------------------------------------------------------------------------------- torch.distributed

DISTRIBUTED_SCRIPT = """
import sys
from pathlib import Path
import torch.distributed as dist
from fuxitranyu.pretrain.train import Trainer
from fuxitranyu.recipe import load_recipe

tmp, name, strategy = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
recipe = load_recipe("tiny", [f"output_dir={tmp}", "mix.context_length=16", "pretrain.total_tokens=1280",
                              "pretrain.batch=[{from_tokens: 0, batch_tokens: 128}]", "pretrain.micro_batch_size=2",
                              "pretrain.max_lr=3e-3", "pretrain.warmup_tokens=128", f"pretrain.distributed={strategy}",
                              "pretrain.checkpoints=[{from_tokens: 0, every_tokens: 640}]", "pretrain.peak_flops=1e11",
                              "pretrain.precision=fp32"])
out = tmp / name
out.mkdir(exist_ok=True)
trainer = Trainer(recipe, tmp / "model", tmp / "mix", out)
trainer.train()
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_give_the_losses_of_one(tmp_path, strategy):
    toy_run(tmp_path)
    assert_two_processes_train_as_one(tmp_path, strategy)


def assert_two_processes_train_as_one(tmp_path, strategy: str) -> None:
    """`tmp_path/model` trained on `tmp_path/mix` by one process and by two under `strategy`: the same losses and the
    same checkpointed weights."""
    from fuxitranyu.pretrain.train import Trainer

    model_dir, mix_dir = tmp_path / "model", tmp_path / "mix"
    single = tmp_path / "single"
    single.mkdir()
    recipe = load_recipe("tiny", [f"output_dir={tmp_path}", f"mix.context_length={CONTEXT}",
                                  "pretrain.total_tokens=1280", "pretrain.batch=[{from_tokens: 0, batch_tokens: 128}]",
                                  "pretrain.micro_batch_size=2", "pretrain.max_lr=3e-3", "pretrain.warmup_tokens=128",
                                  "pretrain.checkpoints=[{from_tokens: 0, every_tokens: 640}]",
                                  "pretrain.peak_flops=1e11", "pretrain.precision=fp32"])
    Trainer(recipe, model_dir, mix_dir, single).train()
    script = tmp_path / "train_distributed.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", str(29500 + (os.getpid() % 1000)), str(script), str(tmp_path),
                             strategy, strategy], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = losses(single), losses(tmp_path / strategy)
    assert [s for s, _ in one] == [s for s, _ in two] == list(range(1, 11))
    np.testing.assert_allclose([loss for _, loss in two], [loss for _, loss in one], rtol=1e-4)
    assert one[-1][1] < one[0][1]
    # The checkpoint written under FSDP/DDP holds the same weights as the single-process one.
    from safetensors.torch import load_file

    a = load_file(single / "checkpoints" / "step-000010" / "model.safetensors")
    b = load_file(tmp_path / strategy / "checkpoints" / "step-000010" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)


def test_torchrun_runs_the_pretrain_command(tmp_path):
    """`torchrun -m fuxitranyu pretrain`: every rank runs the stage; rank 0 alone writes the manifest and renames."""
    model_dir, mix_dir = toy_run(tmp_path / "inputs")
    run = tmp_path / "run"
    import shutil

    for stage, source in (("model", model_dir), ("mix", mix_dir), ("tokenizer", None)):
        shutil.copytree(source, run / stage) if source else (run / stage).mkdir(parents=True)
        (run / stage / "manifest.json").write_text(json.dumps({"stage": stage, "fingerprint": stage * 8}))
    # As the model stage writes an 8B preset: the config alone; each rank initialises its shards after sharding.
    (run / "model" / "model.safetensors").unlink()
    overrides = [f"output_dir={run}", f"mix.context_length={CONTEXT}", "pretrain.total_tokens=640",
                 "pretrain.batch=[{from_tokens: 0, batch_tokens: 128}]", "pretrain.micro_batch_size=2",
                 "pretrain.checkpoints=[{from_tokens: 0, every_tokens: 320}]", "pretrain.peak_flops=1e11",
                 "pretrain.distributed=fsdp", "pretrain.warmup_tokens=0", "pretrain.precision=fp32"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(30500 + (os.getpid() % 1000)), "-m", "fuxitranyu", "pretrain", "tiny"]
    command += [f"--set={o}" for o in overrides]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((run / "pretrain" / "manifest.json").read_text())
    assert manifest["stats"]["world_size"] == 2 and manifest["stats"]["steps"] == 5
    assert manifest["inputs"] == {"model": "model" * 8, "mix": "mix" * 8, "tokenizer": "tokenizer" * 8}
    assert sorted(p.name for p in run.iterdir() if p.name not in (".lock", "logs")) == \
        ["mix", "model", "pretrain", "tokenizer"]  # no partial directory left
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(run / "pretrain" / "model").config.vocab_size == VOCAB


def test_activation_checkpointing_gives_the_same_losses(tmp_path):
    short = "pretrain.total_tokens=384"
    train(tmp_path, "plain", short)
    trainer, _ = train(tmp_path, "checkpointed", short, "pretrain.activation_checkpointing=true")
    assert trainer.model.training and trainer.model.is_activation_checkpointing
    plain, checkpointed = losses(tmp_path / "plain"), losses(tmp_path / "checkpointed")
    assert len(plain) == 6
    np.testing.assert_allclose([loss for _, loss in checkpointed], [loss for _, loss in plain], rtol=1e-5)


def test_config_only_model_is_initialised_on_the_meta_device(tmp_path):
    from fuxitranyu.pretrain.parallelize import load_trainable_model, materialize

    model_dir, _ = toy_run(tmp_path)
    (model_dir / "model.safetensors").unlink()
    model = load_trainable_model(model_dir, "sdpa")
    assert all(p.is_meta for p in model.parameters())
    materialize(model, torch.device("cpu"), 0)
    weight = model.model.layers[0].mlp.up_proj.weight
    assert abs(weight.std().item() - 0.02) < 0.003 and model.model.layers[0].mlp.up_proj.bias.abs().max() == 0
    assert torch.equal(model.model.norm.weight, torch.ones_like(model.model.norm.weight))
    torch.testing.assert_close(model.model.rotary_emb.inv_freq[:2], torch.tensor([1.0, 10000 ** (-2 / 16)]))
    _, stats = train(tmp_path, "out", "pretrain.total_tokens=640")
    first = losses(tmp_path / "out")[0][1]
    assert abs(first - math.log(VOCAB)) < 0.2 and stats["steps"] == 10


# ------------------------------------------------------------- the trainer against transformers' own loss and AdamW


def reference_model(trainer):
    """transformers' stock ArceeForCausalLM holding the trainer's current weights: the third-party reference."""
    from transformers import ArceeForCausalLM

    from fuxitranyu.model.export import convert_config

    arcee = ArceeForCausalLM(convert_config(trainer.model.config, "arcee"))
    arcee.load_state_dict(trainer.model.state_dict())
    return arcee.train()


def next_batch_copy(trainer, sequences):
    """The batch the trainer's reader will hand out next, read by a second reader with the same seed and position."""
    from fuxitranyu.mix.reader import ShardReader

    twin = ShardReader(trainer.reader.mix_dir, seed=trainer.reader.seed)
    twin.load_state_dict(trainer.reader.state_dict())
    return twin.next_batch(sequences)


def captured_gradients(trainer):
    """Gradients as the optimizer sees them (after accumulation and clipping), captured at its next step."""
    captured = {}
    original = trainer.optimizer.step

    def step(*args, **kwargs):
        captured.update({name: p.grad.clone() for name, p in trainer.model.named_parameters()})
        return original(*args, **kwargs)

    trainer.optimizer.step = step
    return captured


@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("chunk", [1000, 7], ids=["one-chunk", "chunked"])
def test_fused_loss_equals_torch_cross_entropy_and_its_gradients(chunk, dtype):
    """The fused loss against PyTorch's own `cross_entropy` of the full logits: per-token losses, and the gradients
    of a scaled sum (as the trainer's `total * scale`); under bf16 autocast both sides do the matmuls in bf16."""
    import torch.nn.functional as F

    from fuxitranyu.pretrain.loss import linear_cross_entropy

    torch.manual_seed(0)
    hidden = torch.randn(3, 17, 16, requires_grad=True)
    weight = torch.randn(97, 16, requires_grad=True)
    targets = torch.randint(0, 97, (3, 17))
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        total, losses = linear_cross_entropy(hidden, weight, targets, chunk)
        reference = F.cross_entropy((hidden @ weight.t()).float().reshape(-1, 97), targets.reshape(-1),
                                    reduction="none")
    assert total.requires_grad and not losses.requires_grad and losses.dtype == torch.float32
    torch.testing.assert_close(losses, reference.detach(), rtol=1e-5, atol=1e-5)
    ours = torch.autograd.grad(total * 0.25, (hidden, weight), retain_graph=True)
    again = torch.autograd.grad(total * 0.25, (hidden, weight))  # a retained graph's second backward: the same
    assert all(torch.equal(a, b) for a, b in zip(ours, again))
    theirs = torch.autograd.grad(reference.sum() * 0.25, (hidden, weight))
    # bf16: our fp32 sum over chunks of bf16 products vs autocast's one bf16 product, a bf16 rounding apart
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype is None else dict(rtol=2e-2, atol=2e-2)
    for mine, stock in zip(ours, theirs):
        assert mine.dtype == stock.dtype == torch.float32
        torch.testing.assert_close(mine, stock, **tolerance)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        total, losses = linear_cross_entropy(hidden, weight, targets, chunk)
    assert not total.requires_grad and float(total) == pytest.approx(float(reference.detach().sum()), rel=1e-4)


@pytest.mark.parametrize("chunk", [4096, 8], ids=["one-chunk", "chunked"])
def test_step_loss_and_gradients_equal_transformers(tmp_path, chunk):
    """One optimizer step of 4 micro-batches: the loss, the per-language losses and the accumulated gradients equal
    what transformers' Arcee computes with `model(ids, labels=ids).loss` on the same sequences. With 8-token chunks
    the fused cross-entropy works over many chunks (the only way at a 250k vocabulary)."""
    from fuxitranyu.pretrain.train import Trainer

    model_dir, mix_dir = toy_run(tmp_path)
    recipe = toy_recipe(tmp_path, f"pretrain.loss_chunk_tokens={chunk}", "pretrain.grad_clip=0",
                        "pretrain.micro_batch_size=1")
    (tmp_path / "out").mkdir()
    trainer = Trainer(recipe, model_dir, mix_dir, tmp_path / "out")
    reference = reference_model(trainer)
    batch = next_batch_copy(trainer, 4)
    ids = torch.from_numpy(batch.tokens)
    gradients = captured_gradients(trainer)
    result = trainer.step(4 * CONTEXT, lr=1e-3)

    expected = reference(input_ids=ids, labels=ids).loss
    expected.backward()
    assert result.loss == pytest.approx(expected.item(), rel=1e-5)
    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(gradients[name], parameter.grad, rtol=1e-4, atol=1e-6, msg=name)
    # per language: the mean of the reference's per-token losses over the tokens each label covers
    with torch.no_grad():
        logits = reference(input_ids=ids[:, :-1]).logits
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    labels = torch.from_numpy(batch.languages[:, 1:].astype("int64"))
    for index, language in enumerate(trainer.reader.languages):
        mine = labels == index
        assert result.loss_by_language[language] == pytest.approx(per_token[mine].mean().item(), rel=1e-4)
    weights = {language: int((labels == i).sum()) for i, language in enumerate(trainer.reader.languages)}
    mean = sum(result.loss_by_language[lang] * n for lang, n in weights.items()) / sum(weights.values())
    assert mean == pytest.approx(result.loss, rel=1e-4)  # the token-weighted mean of the parts is the whole


def test_gradient_accumulation_equals_one_full_batch(tmp_path):
    _, full = train(tmp_path, "full", "pretrain.micro_batch_size=8", "pretrain.total_tokens=1280",
                    "pretrain.batch=[{from_tokens: 0, batch_tokens: 128}]")
    _, accumulated = train(tmp_path, "accumulated", "pretrain.micro_batch_size=2", "pretrain.total_tokens=1280",
                           "pretrain.batch=[{from_tokens: 0, batch_tokens: 128}]")
    np.testing.assert_allclose([loss for _, loss in losses(tmp_path / "accumulated")],
                               [loss for _, loss in losses(tmp_path / "full")], rtol=1e-5)


def test_clipping_bounds_the_global_norm_and_weight_decay_spares_vectors_and_embeddings(tmp_path):
    from fuxitranyu.pretrain.train import Trainer

    model_dir, mix_dir = toy_run(tmp_path)
    (tmp_path / "out").mkdir()
    trainer = Trainer(toy_recipe(tmp_path, "pretrain.grad_clip=0.05"), model_dir, mix_dir, tmp_path / "out")
    reference = reference_model(trainer)
    ids = torch.from_numpy(next_batch_copy(trainer, 4).tokens)
    gradients = captured_gradients(trainer)
    result = trainer.step(4 * CONTEXT, lr=1e-3)
    reference(input_ids=ids, labels=ids).loss.backward()
    unclipped = torch.nn.utils.get_total_norm([p.grad for p in reference.parameters()]).item()
    assert result.grad_norm == pytest.approx(unclipped, rel=1e-4) and unclipped > 0.05
    assert torch.nn.utils.get_total_norm(list(gradients.values())).item() == pytest.approx(0.05, rel=1e-4)

    decayed = {id(p) for group in trainer.optimizer.param_groups if group["weight_decay"] > 0 for p in group["params"]}
    for name, parameter in trainer.model.named_parameters():
        matrix = parameter.ndim == 2 and "embed_tokens" not in name and "lm_head" not in name
        assert (id(parameter) in decayed) == matrix, name
    assert trainer.recipe.weight_decay == 0.1 and len(decayed) == 4 * 2 + 2 * 2  # q k v o + up down, 2 layers


def test_mfu_is_the_flops_formula_over_the_peak(tmp_path):
    from fuxitranyu.model.summary import summarize

    trainer, _ = train(tmp_path, "out", "pretrain.total_tokens=640")
    config = trainer.model.config
    parameters = sum(p.numel() for p in trainer.model.parameters())
    embedding = config.vocab_size * config.hidden_size
    attention = 12 * config.num_hidden_layers * config.hidden_size * CONTEXT
    flops = 6 * (parameters - 2 * embedding) + 6 * embedding + attention
    assert summarize(config, CONTEXT).training_flops_per_token == flops
    row = json.loads((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["mfu"] == pytest.approx(row["tokens_per_s"] * flops / 1e11, abs=1e-4)  # pretrain.peak_flops=1e11


def test_a_loss_spike_rolls_back_after_min_steps_and_the_lower_lr_is_used(tmp_path):
    from fuxitranyu.pretrain import schedule

    # forward 3 is in step 2 (before min_steps=10: ignored); forward 31 is in step 16 (after the step-10 checkpoint)
    trainer, stats = train(tmp_path, "out", patch=plant_loss_factor({3, 31}, 50.0))
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in rows if "event" in r]
    assert [(e["event"], e["step"], e["to"]) for e in events] == [("rollback", 16, "step-000010")]
    assert stats["rollbacks"] == 1 and trainer.state.lr_scale == 0.5
    steps = [r for r in rows if "event" not in r]
    assert steps[1]["loss"] > 10 * steps[0]["loss"]  # the early spike was trained through, as min_steps says
    recipe = trainer.recipe
    after = [r for r in steps if r["step"] > 10][-1]  # logged after the rollback
    before_tokens = after["tokens"] - after["batch_tokens"]
    assert after["lr"] == pytest.approx(0.5 * schedule.learning_rate(before_tokens, recipe))


# ------------------------------------------------------------------------------------- precision and speed choices


@pytest.mark.parametrize("bf16_unit, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu_bf16_probe(monkeypatch, bf16_unit, expected):
    from fuxitranyu import runtime

    monkeypatch.setattr(runtime, "cpu_has_bf16_unit", lambda: bf16_unit)
    choice = runtime.choose_precision("auto", torch.device("cpu"))
    assert choice.name == expected and ("has a bf16" in choice.reason) == bf16_unit
    assert choice.autocast_dtype == (torch.bfloat16 if bf16_unit else None) and not choice.needs_loss_scaling
    assert runtime.choose_precision("fp16", torch.device("cpu")).needs_loss_scaling


@pytest.mark.parametrize("context, bf16_kernel", [(256, "matmul"), (4096, "sdpa")])
def test_the_bf16_probe_times_each_precision_with_the_kernel_it_would_get(monkeypatch, context, bf16_kernel):
    from fuxitranyu import runtime
    from fuxitranyu.model import FuxiTranyuConfig
    from fuxitranyu.pretrain import decisions
    from fuxitranyu.pretrain.config import PretrainSection
    from fuxitranyu.runtime import World

    calls = []
    monkeypatch.setattr(runtime, "cpu_has_bf16_unit", lambda: True)
    monkeypatch.setattr(decisions, "layer_bf16_speedup", lambda *args: calls.append(args) or 1.5)
    monkeypatch.setattr(runtime, "keep_freed_host_memory", lambda *args: runtime.HostMemory(False, "test"))
    config = FuxiTranyuConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2)
    chosen = decisions.setup_runtime(PretrainSection(), World(), config, 3, context)
    assert calls == [(config, 3, context, ("sdpa", bf16_kernel))]
    assert chosen.precision.name == "bf16" and "1.5x" in chosen.precision.reason


def test_the_machine_probes_leave_the_random_generators_alone():
    """The bf16 probe and the peak-FLOP/s probe draw random tensors; a resumed run reuses their answers and does not
    draw them, so they must not move the generators that training draws from (found by tools/kill-sweep: a run
    resumed before its first checkpoint saved another torch RNG state than the uninterrupted run)."""
    from fuxitranyu.model import FuxiTranyuConfig
    from fuxitranyu.pretrain.decisions import layer_bf16_speedup, measure_peak_flops

    torch.manual_seed(3)
    before = torch.get_rng_state()
    config = FuxiTranyuConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2)
    layer_bf16_speedup(config, 2, 16, ("sdpa", "sdpa"), repeats=1)
    measure_peak_flops(torch.device("cpu"), None)
    assert torch.equal(torch.get_rng_state(), before)


def test_mfu_divides_by_the_peak_of_the_dtype_in_use(tmp_path, monkeypatch):
    from fuxitranyu.pretrain import train as train_module

    probed = []

    def probe(device, dtype):
        probed.append(dtype)
        return 1e12 if dtype is None else 4e12

    monkeypatch.setattr(train_module, "measure_peak_flops", probe)
    model_dir, mix_dir = toy_run(tmp_path)
    for precision, out in (("bf16", "b"), ("fp32", "f")):
        (tmp_path / out).mkdir()
        recipe = toy_recipe(tmp_path, "pretrain.peak_flops=null", f"pretrain.precision={precision}")
        trainer = train_module.Trainer(recipe, model_dir, mix_dir, tmp_path / out)
        assert trainer.peak_flops == (4e12 if precision == "bf16" else 1e12)
    assert probed == [torch.bfloat16, None]


def test_a_bf16_run_resumes_to_the_same_loss_curve_and_tracks_fp32(tmp_path):
    bf16 = "pretrain.precision=bf16"
    trainer, _ = train(tmp_path, "reference", bf16)
    assert trainer.attention.value == "matmul"  # `auto` on a CPU in bf16: the kernel under test here
    assert trainer.model.config._attn_implementation == "fuxitranyu_matmul"
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "resumed", bf16, patch=kill_at_step(13))
    train(tmp_path, "resumed", bf16, resume=True)
    assert losses(tmp_path / "resumed") == losses(tmp_path / "reference")
    train(tmp_path, "fp32")
    low, full = [loss for _, loss in losses(tmp_path / "reference")], [loss for _, loss in losses(tmp_path / "fp32")]
    np.testing.assert_allclose(low, full, rtol=0.02)  # bf16 autocast follows the fp32 curve within 2%


def test_compile_auto_decides_from_device_precision_length_and_compiler(monkeypatch):
    from fuxitranyu.pretrain import decisions
    from fuxitranyu.pretrain.config import PretrainSection
    from fuxitranyu.runtime import HostMemory, Precision, World

    def runtime(device, precision):
        return decisions.Runtime(World(), torch.device(device), Precision(precision, "test"), HostMemory(True, "test"))

    auto, long_run = PretrainSection(), decisions.CPU_COMPILE_MIN_STEPS
    assert decisions.compile_decision(auto, runtime("cuda", "bf16"), 10).value
    assert not decisions.compile_decision(auto, runtime("cpu", "fp32"), 10**6).value
    assert not decisions.compile_decision(auto, runtime("cpu", "bf16"), long_run - 1).value
    assert decisions.compile_decision(auto, runtime("cpu", "bf16"), long_run).value
    monkeypatch.setattr(decisions.shutil, "which", lambda name: None)
    assert not decisions.cpp_compiler_found()
    decision = decisions.compile_decision(auto, runtime("cpu", "bf16"), long_run)
    assert not decision.value and "no C++ compiler" in decision.reason
    assert decisions.compile_decision(PretrainSection(compile=True), runtime("cpu", "fp32"), 1).value
    assert not decisions.compile_decision(PretrainSection(compile=False), runtime("cuda", "bf16"), 10**6).value


def test_attention_auto_takes_the_matmul_kernel_only_on_a_cpu_in_low_precision_at_short_contexts():
    from fuxitranyu.pretrain.config import PretrainSection
    from fuxitranyu.pretrain.decisions import MATMUL_ATTENTION_MAX_CONTEXT, attention_decision
    from fuxitranyu.runtime import Precision

    def kernel(device, precision, context, recipe=PretrainSection()):
        return attention_decision(recipe, torch.device(device), Precision(precision, "test"), context).value

    assert kernel("cpu", "bf16", 512) == kernel("cpu", "fp16", MATMUL_ATTENTION_MAX_CONTEXT) == "matmul"
    assert kernel("cpu", "bf16", MATMUL_ATTENTION_MAX_CONTEXT + 1) == "sdpa"
    assert kernel("cpu", "fp32", 512) == kernel("cuda", "bf16", 512) == "sdpa"
    assert kernel("cpu", "bf16", 512, PretrainSection(attention="sdpa")) == "sdpa"
    assert kernel("cuda", "bf16", 512, PretrainSection(attention="matmul")) == "matmul"


RSS_AFTER_FREE = """
import sys, torch
from fuxitranyu.runtime import keep_freed_host_memory
requested = {"auto": "auto", "true": True, "false": False}[sys.argv[1]]
decision = keep_freed_host_memory(requested, torch.device(sys.argv[2]))
def rss():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmRSS"))
before = rss()
big = torch.ones(50_000_000)  # 200 MB, far above glibc's 32 MiB mmap limit
del big
print(decision.kept, rss() - before)
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
@pytest.mark.parametrize("requested, device, kept", [("auto", "cpu", True), ("true", "cpu", True),
                                                     ("false", "cpu", False), ("auto", "cuda", False)])
def test_freed_host_memory_is_kept_for_reuse_only_when_training_on_a_cpu(requested, device, kept):
    """Kept: a freed 200 MB tensor stays resident for the next step's tensors; returned: the kernel gets it back."""
    out = subprocess.run([sys.executable, "-c", RSS_AFTER_FREE, requested, device], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == str(kept)
    resident_after_free = int(out[1])
    assert resident_after_free > 150e6 if kept else resident_after_free < 20e6, resident_after_free


def test_freed_host_memory_is_left_alone_without_glibc(monkeypatch):
    """Elsewhere (musl, macOS, Windows) the decision says why and never reaches for mallopt."""
    from fuxitranyu import runtime

    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda *_: pytest.fail("mallopt called without glibc"))
    decision = runtime.keep_freed_host_memory("auto", torch.device("cpu"))
    assert not decision.kept and "needs glibc's mallopt" in decision.reason
    assert not runtime.keep_freed_host_memory(False, torch.device("cpu")).kept
