"""The memory and time plan: the activation estimate against what autograd really saves, and the paper's recipe
against the paper's hardware."""

import pytest
import torch

from fuxitranyu.model import FuxiTranyuForCausalLM, preset_config
from fuxitranyu.model.summary import recipe_model, summarize_module
from fuxitranyu.pretrain.config import PretrainSection
from fuxitranyu.pretrain.decisions import attention_implementation
from fuxitranyu.pretrain.loss import CausalLMLoss
from fuxitranyu.pretrain.plan import GIB, activation_model, memory_plan, parse_bytes, time_plan
from fuxitranyu.recipe import load_recipe


def on_meta(config):
    with torch.device("meta"):
        return FuxiTranyuForCausalLM(config)


def saved_for_backward(model, ids, dtype, checkpointing, chunk_tokens) -> int:
    """Bytes of the distinct storages autograd saves during one forward of the training loss (weights excluded)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
            torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        CausalLMLoss(model, chunk_tokens)(ids[:, :-1], ids[:, 1:])
    return sum(size for pointer, size in storages.items() if pointer not in weights)


SHAPES = {
    "small": dict(hidden_size=128, intermediate_size=512, num_attention_heads=4, num_hidden_layers=3),
    "gqa-wide-mlp": dict(hidden_size=192, intermediate_size=1024, num_attention_heads=6, num_key_value_heads=2,
                         num_hidden_layers=2),
}


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("chunk,attention", [(4096, "sdpa"), (128, "sdpa"), (4096, "matmul")],
                         ids=["one-chunk", "chunked", "matmul-attention"])
def test_activation_estimate_is_within_10_percent_of_what_autograd_saves(shape, dtype, checkpointing, chunk,
                                                                          attention):
    config = preset_config("tiny", vocab_size=1024, max_position_embeddings=256, **SHAPES[shape])
    config._attn_implementation = attention_implementation(attention)
    torch.manual_seed(0)
    model = FuxiTranyuForCausalLM(config)
    context = 128
    # Saved bytes at 2 and 4 sequences: the difference is what 2 sequences of activations cost, without the
    # low-precision weight copies autocast also saves (counted with the training state, not per token).
    two, four = (saved_for_backward(model, torch.randint(0, config.vocab_size, (batch, context + 1)), dtype,
                                    checkpointing, chunk) for batch in (2, 4))
    measured = four - two
    estimate = activation_model(config, dtype is not None, attention, context).saved(
        config.num_hidden_layers, checkpointing) * 2 * context
    assert abs(estimate - measured) / measured < 0.10, (estimate, measured)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_the_activation_estimate_holds_for_the_stock_families_it_plans(family, dtype, checkpointing):
    """The plan's activation model for Llama, Qwen2 and Mistral (model.init_from), within 10% of what
    transformers' own modules save, measured the same way as ours."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(family, vocab_size=1024, hidden_size=192, intermediate_size=1024,
                                  num_attention_heads=6, num_key_value_heads=2, num_hidden_layers=2,
                                  max_position_embeddings=256)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    context = 128
    two, four = (saved_for_backward(model, torch.randint(0, config.vocab_size, (batch, context + 1)), dtype,
                                    checkpointing, 4096) for batch in (2, 4))
    estimate = activation_model(config, dtype is not None, "sdpa", context).saved(
        config.num_hidden_layers, checkpointing) * 2 * context
    assert abs(estimate - (four - two)) / (four - two) < 0.10, (estimate, four - two)


def test_the_papers_recipe_fits_32_gpus_of_80_gb_and_a_bad_one_is_refused():
    recipe = load_recipe("fuxitranyu-8b")
    model = recipe_model(recipe)
    plan = memory_plan(model, recipe.pretrain, recipe.mix.context_length, 32, True, parse_bytes("80GiB"))
    assert plan.strategy == "fsdp" and plan.fits and plan.largest_micro_batch >= recipe.pretrain.micro_batch_size
    assert 15 < plan.training_state / GIB < 25  # ZeRO-2: 2 B/param unsharded + 16 B/param over 32
    heavy = recipe.pretrain.model_copy(update={"micro_batch_size": 8, "activation_checkpointing": False})
    too_much = memory_plan(model, heavy, recipe.mix.context_length, 32, True, parse_bytes("80GiB"))
    assert not too_much.fits and too_much.largest_micro_batch < 8
    summary = summarize_module(model, recipe.mix.context_length)
    days = time_plan(summary, recipe.pretrain.total_tokens, 32, "A800", 0.4).days
    assert 50 < days < 200


def test_sizes_parse():
    assert parse_bytes("80GiB") == 80 * 2**30 and parse_bytes("80GB") == 80 * 10**9 and parse_bytes("512") == 512
    with pytest.raises(Exception, match="expected a size"):
        parse_bytes("lots")


def test_zero3_and_ddp_state_per_device():
    config = on_meta(preset_config("fuxitranyu-8b"))
    parameters = 8_095_313_920
    base = PretrainSection()
    zero2 = memory_plan(config, base.model_copy(update={"distributed": "fsdp"}), 4096, 32, True)
    zero3 = memory_plan(config, base.model_copy(update={"distributed": "fsdp", "reshard_after_forward": True}),
                        4096, 32, True)
    ddp = memory_plan(config, base.model_copy(update={"distributed": "ddp"}), 4096, 32, True)
    assert zero2.training_state == 16 * parameters // 32 + 2 * parameters
    assert zero3.training_state < zero2.training_state and ddp.training_state == 18 * parameters


def test_pretraining_refuses_a_configuration_that_cannot_fit(tmp_path, monkeypatch):
    from test_pretrain import toy_recipe, toy_run

    from fuxitranyu.errors import FuxiError
    from fuxitranyu.model import FuxiTranyuConfig
    from fuxitranyu.pretrain import train

    model_dir, mix_dir = toy_run(tmp_path)
    (tmp_path / "out").mkdir()
    recipe = toy_recipe(tmp_path, "pretrain.micro_batch_size=4").pretrain
    config = on_meta(FuxiTranyuConfig.from_pretrained(model_dir))
    one = memory_plan(config, recipe.model_copy(update={"micro_batch_size": 1}), 16, 1, False)
    small_device = int((one.training_state + one.loss_logits + 2.5 * one.activations) / 0.9)  # room for 2 sequences
    monkeypatch.setattr(train, "device_memory_bytes", lambda device: small_device)
    with pytest.raises(FuxiError, match=r"needs about .* GiB per device .* lower pretrain.micro_batch_size to 2"):
        train.Trainer(toy_recipe(tmp_path, "pretrain.micro_batch_size=4"), model_dir, mix_dir, tmp_path / "out")
    trainer = train.Trainer(toy_recipe(tmp_path, "pretrain.micro_batch_size=4", "pretrain.ignore_memory_plan=true"),
                            model_dir, mix_dir, tmp_path / "out")
    assert trainer.context_length == 16


def test_the_8b_recipe_names_the_papers_sources_and_58_checkpoints():
    from fuxitranyu.pretrain import schedule

    recipe = load_recipe("fuxitranyu-8b")
    sources = {source.source_name: source for source in recipe.data.sources}
    assert {"culturax", "starcoderdata", "redpajama-github", "s2orc", "gutenberg", "multiun", "opensubtitles"} <= \
        set(sources)
    assert len(sources["culturax"].per_language) == 43
    assert {label for label in sources["starcoderdata"].per_language} == {
        label for label in __import__("fuxitranyu.languages", fromlist=["LABELS"]).LABELS if label.startswith("code-")}
    pretrain, tokens, saved = recipe.pretrain, 0, []
    while tokens < pretrain.total_tokens:
        step = schedule.batch_tokens(tokens, pretrain)
        if schedule.checkpoint_due(tokens, tokens + step, pretrain):
            saved.append(tokens + step)
        tokens += step
    assert len(saved) == 58 and saved[-1] >= pretrain.total_tokens
    assert saved[1] - saved[0] < saved[-1] - saved[-2]  # denser early


def test_a_default_schedule_scales_with_the_run():
    from fuxitranyu.pretrain import schedule

    for total in (10**6, 10**9, 606 * 10**9):
        recipe = PretrainSection(total_tokens=total, batch=[{"from_tokens": 0, "batch_tokens": total // 1000}])
        due = [t for t in range(0, total, total // 1000) if schedule.checkpoint_due(t, t + total // 1000, recipe)]
        assert len(due) == 20 and due[1] - due[0] < due[-1] - due[-2]


def test_offline_the_paper_data_stage_fails_at_once_listing_every_unreachable_dataset(tmp_path):
    import os
    import subprocess
    import sys
    import time

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "fuxitranyu", "data", "fuxitranyu-8b",
                             f"--set=output_dir={tmp_path}"], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2 and time.monotonic() - started < 120
    message = result.stderr
    assert "Traceback" not in message and "can be read neither from disk, the caches nor the hub" in message
    for part in ("uonlp/CulturaX[fr]", "uonlp/CulturaX[lo]", "bigcode/starcoderdata[python]", "allenai/peS2o",
                 "Helsinki-NLP/multi_un[en-fr]"):
        assert part in message
