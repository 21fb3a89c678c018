import json
import subprocess
import sys

import pytest
import torch
from conftest import skip_unless
from transformers import ArceeForCausalLM, AutoConfig, AutoModelForCausalLM

from fuxitranyu.model import FuxiTranyuConfig, FuxiTranyuForCausalLM, preset_config
from fuxitranyu.model.export import convert_config, export_checkpoint
from fuxitranyu.model.matmul_attention import MATMUL_ATTENTION
from fuxitranyu.model.modeling import FuxiTranyuDecoderLayer, FuxiTranyuRotaryEmbedding
from fuxitranyu.model.summary import (
    closed_form_parameter_count,
    meta_parameter_count,
    summarize,
)
from fuxitranyu.pretrain.decisions import cpp_compiler_found

SIZES = {
    "tiny": dict(hidden_size=64, intermediate_size=256, num_attention_heads=4, num_hidden_layers=2),
    "gqa": dict(hidden_size=96, intermediate_size=200, num_attention_heads=6, num_key_value_heads=2,
                num_hidden_layers=3),
    "wide-heads": dict(hidden_size=128, intermediate_size=384, num_attention_heads=2, num_hidden_layers=2,
                       rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
}


def random_pair(fields, attn="sdpa", seed=0):
    config = FuxiTranyuConfig(vocab_size=300, max_position_embeddings=64, **fields)
    torch.manual_seed(seed)
    ours = FuxiTranyuForCausalLM(config).eval()
    # Non-trivial norms and biases, so that a missing bias or norm weight would show in the logits.
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    ours.config._attn_implementation = attn
    arcee = ArceeForCausalLM(convert_config(config, "arcee")).eval()
    arcee.load_state_dict(ours.state_dict(), strict=True)
    arcee.config._attn_implementation = "sdpa" if attn == MATMUL_ATTENTION else attn  # our own kernel vs Arcee's SDPA
    return ours, arcee


ATTENTION_KERNELS = ["sdpa", "eager", MATMUL_ATTENTION]


@pytest.mark.parametrize("attn", ATTENTION_KERNELS)
@pytest.mark.parametrize("size", sorted(SIZES))
def test_logits_equal_arcee(size, attn):
    ours, arcee = random_pair(SIZES[size], attn)
    ids = torch.randint(0, 300, (3, 17), generator=torch.Generator().manual_seed(1))
    # Left padding of different lengths, and matching position ids that start at 0 after the padding.
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    mask[2, :9] = 0
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    # the same mask as a ready 4D additive float mask (causal and padding), which transformers passes through as is
    visible = torch.ones(17, 17, dtype=torch.bool).tril() & mask.bool()[:, None, None, :]
    additive = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)
    with torch.no_grad():
        for kwargs in ({}, {"attention_mask": mask}, {"attention_mask": mask, "position_ids": position_ids},
                       {"position_ids": position_ids + 5}, {"attention_mask": additive}):
            a = ours(ids, **kwargs).logits
            b = arcee(ids, **kwargs).logits
            keep = mask.bool() if "attention_mask" in kwargs else torch.ones_like(ids).bool()
            assert (a - b)[keep].abs().max().item() < 1e-5, kwargs
    assert a.abs().max() > 0.1  # not a degenerate all-zero comparison


@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_matmul_attention_trains_like_arcee(dtype):
    """The CPU training kernel gives Arcee's (SDPA) loss and gradients: exactly in fp32, within bf16's rounding
    under autocast (the two kernels round in different places)."""
    ours, arcee = random_pair(SIZES["gqa"], MATMUL_ATTENTION)
    ids = torch.randint(0, 300, (2, 33), generator=torch.Generator().manual_seed(3))
    results = []
    for model in (ours, arcee):
        model.train()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(ids, labels=ids).loss
        loss.backward()
        grads = dict(model.named_parameters())  # by name: the two classes register their modules in different orders
        results.append((loss.item(), torch.cat([grads[name].grad.flatten() for name in sorted(grads)])))
    (loss, grads), (reference_loss, reference_grads) = results
    tolerance = 1e-5 if dtype is None else 2e-2
    assert abs(loss - reference_loss) < tolerance * reference_loss
    assert (grads - reference_grads).norm() < tolerance * reference_grads.norm()


def test_matmul_attention_inside_a_compiled_layer_keeps_finite_equal_gradients():
    """Inductor once turned this kernel's (and the plain eager attention's) bf16 gradients into NaNs; the kernel is
    kept out of compiled graphs, so a compiled layer gives the eager layer's gradients."""
    skip_unless(cpp_compiler_found(), "torch.compile on a CPU needs a C++ compiler (CI installs g++)")
    config = FuxiTranyuConfig(vocab_size=300, hidden_size=256, intermediate_size=512, num_attention_heads=4,
                              num_hidden_layers=1, max_position_embeddings=64)  # a size where the NaNs showed
    config._attn_implementation = MATMUL_ATTENTION
    torch.manual_seed(0)
    layer = FuxiTranyuDecoderLayer(config, 0)
    rope = FuxiTranyuRotaryEmbedding(config)
    x = torch.randn(8, 64, 256)
    grads = []
    for run in (layer, torch.compile(layer)):
        inputs = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = run(inputs, position_embeddings=rope(inputs, torch.arange(64)[None]), attention_mask=None)
        out.float().sum().backward()
        grads.append(inputs.grad)
    assert torch.isfinite(grads[1]).all()
    assert (grads[1] - grads[0]).norm() < 2e-2 * grads[0].norm()


def test_biases_and_untied_embeddings_present(tiny_config):
    model = FuxiTranyuForCausalLM(tiny_config)
    names = dict(model.named_parameters())
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert f"model.layers.0.self_attn.{proj}.bias" in names
    assert "model.layers.0.mlp.up_proj.bias" in names and "model.layers.0.mlp.down_proj.bias" in names
    assert "model.layers.0.mlp.gate_proj.weight" not in names  # non-gated MLP
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("attn", ATTENTION_KERNELS)
@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("sampling", [False, True], ids=["greedy", "sampled"])
def test_generate_equals_arcee(attn, use_cache, sampling):
    """`generate` follows transformers' own Arcee (which tracks every API change of the library) on a left-padded
    batch of two: a renamed cache argument, a lost position or a wrong mask would change the tokens."""
    # Large random weights, so that each next token depends on the context (at 0.02 the model repeats one token).
    ours, arcee = random_pair({**SIZES["gqa"], "initializer_range": 0.3}, attn)
    prompts = torch.tensor([[0, 0, 0, 5, 17, 42], [9, 8, 7, 6, 5, 4]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    options = dict(attention_mask=mask, max_new_tokens=12, use_cache=use_cache, pad_token_id=0, eos_token_id=None,
                   do_sample=sampling)
    if sampling:
        options.update(top_k=0, top_p=1.0, temperature=1.0)
    outputs = []
    for model in (ours, arcee):
        torch.manual_seed(7)
        with torch.no_grad():
            outputs.append(model.generate(prompts, **options).tolist())
    assert outputs[0] == outputs[1]
    assert len({tuple(row[6:]) for row in outputs[0]}) == 2 and len(set(outputs[0][1][6:])) > 1  # not degenerate


def test_cached_decoding_equals_full_forward(tiny_config):
    torch.manual_seed(0)
    model = FuxiTranyuForCausalLM(tiny_config).eval()
    prompt = torch.tensor([[5, 17, 42, 7, 99]])
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True,
                                   pad_token_id=0, eos_token_id=None)
        ids = prompt
        for _ in range(12):
            next_id = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, next_id], dim=1)
    assert generated.tolist() == ids.tolist()


def test_no_deprecation_warning_from_our_forward(tiny_config):
    import warnings

    model = FuxiTranyuForCausalLM(tiny_config).eval()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False, pad_token_id=0)
        model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]]))
    deprecations = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not deprecations, [str(w.message) for w in deprecations]


def test_old_cache_keyword_still_works_and_unknown_keywords_fail(tiny_config):
    model = FuxiTranyuForCausalLM(tiny_config).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        full = model(ids).logits[:, -1]
        first = model(ids[:, :3], use_cache=True)
        with pytest.warns(FutureWarning):
            step = model(ids[:, 3:], past_key_values=first.cache, use_cache=True).logits[:, -1]
        torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)
        with pytest.raises(TypeError, match="past_key_value"):
            model(ids, past_key_value=first.cache)  # a typo must not be ignored
        with pytest.raises(TypeError, match="cache_kwargs"):
            model.model(ids, cache_kwargs={})


@pytest.mark.parametrize("imports", [
    "import fuxitranyu",  # then the Auto classes, first touched by the checkpoint's loading
    "from transformers import AutoModelForCausalLM\nimport fuxitranyu",  # transformers' Auto classes loaded already
    "import fuxitranyu\nimport transformers.modeling_layers",  # a library that loads them while importing itself
])
def test_import_fuxitranyu_then_the_auto_classes_load_our_checkpoint_in_any_order(tmp_path, tiny_config, imports):
    """The package registers our model type lazily (so that the command line loads no torch): whatever the order
    of imports, AutoConfig and AutoModelForCausalLM know a FuxiTranyu checkpoint."""
    FuxiTranyuForCausalLM(tiny_config).save_pretrained(tmp_path / "ckpt")
    script = f"""{imports}
import sys
from transformers import AutoConfig, AutoModelForCausalLM
assert type(AutoConfig.from_pretrained({str(tmp_path / 'ckpt')!r})).__name__ == "FuxiTranyuConfig"
assert type(AutoModelForCausalLM.from_pretrained({str(tmp_path / 'ckpt')!r})).__name__ == "FuxiTranyuForCausalLM"
print("OK")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-2000:]


def test_save_load_round_trip_in_a_fresh_process(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = FuxiTranyuForCausalLM(tiny_config).eval()
    model.save_pretrained(tmp_path / "ckpt")
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        torch.save(model(ids).logits, tmp_path / "expected.pt")
    script = f"""
import torch, fuxitranyu
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'ckpt')!r}).eval()
assert type(m).__name__ == "FuxiTranyuForCausalLM", type(m)
with torch.no_grad():
    out = m(torch.tensor([[1, 2, 3, 4, 5, 6]])).logits
expected = torch.load({str(tmp_path / 'expected.pt')!r})
assert torch.equal(out, expected), (out - expected).abs().max()
print("OK")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("OK")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["model_type"] == "fuxitranyu" and "auto_map" not in saved


def test_released_format_config_loads_without_remote_code(tmp_path):
    released = {
        "architectures": ["FuxiTranyuForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_fuxitranyu.FuxiTranyuConfig",
                     "AutoModelForCausalLM": "modeling_fuxitranyu.FuxiTranyuForCausalLM"},
        "model_type": "fuxitranyu", "activation_function": "gelu_fast", "attention_bias": True,
        "bos_token_id": 0, "eos_token_id": 0, "hidden_size": 64, "initializer_range": 0.02,
        "intermediate_size": 256, "max_position_embeddings": 128, "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32",
        "use_cache": True, "vocab_size": 250680,
    }
    (tmp_path / "config.json").write_text(json.dumps(released))
    # No modeling_fuxitranyu.py exists in the directory: loading works only if auto_map is ignored.
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, FuxiTranyuConfig)
    assert config.hidden_act == "gelu_pytorch_tanh"
    assert config.rope_parameters["rope_theta"] == 10000.0 and config.vocab_size == 250680
    assert config.auto_map == {}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert isinstance(model, FuxiTranyuForCausalLM)
    assert model.lm_head.weight.shape == (250680, 64)


def test_8b_preset_parameter_count():
    config = preset_config("fuxitranyu-8b")
    d, f, v, layers = 4096, 16384, 250_752, 30
    per_layer = (4 * d * d + 4 * d) + (2 * d * f + f + d) + 2 * d
    expected = 2 * v * d + layers * per_layer + d
    assert closed_form_parameter_count(config) == expected == 8_095_313_920
    assert meta_parameter_count(config) == expected
    assert config.vocab_size % 128 == 0 and config.vocab_size - 250_680 == 72
    summary = summarize(config)
    assert summary.non_embedding_parameters == expected - 2 * v * d
    from fuxitranyu.pretrain.plan import training_state_bytes

    # ZeRO-2 over 32 GPUs: fp32 weights, gradients and both Adam moments sharded (16 B/param / 32), every layer's
    # low-precision weights whole from forward to backward (2 B/param); DDP holds everything whole.
    assert training_state_bytes(expected, 32, "fsdp", 0) == 16 * expected // 32 + 2 * expected
    assert training_state_bytes(expected, 32, "ddp", 0) == 18 * expected


def test_small_presets_sizes():
    tiny = meta_parameter_count(preset_config("tiny"))
    small = meta_parameter_count(preset_config("small"))
    assert 1e6 < tiny < 1e7 and 1e7 < small < 1e8


def test_export_to_arcee_and_back_keeps_weights(tmp_path, tiny_config):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = FuxiTranyuForCausalLM(tiny_config).eval()
    model.save_pretrained(tmp_path / "ours")
    export_checkpoint(tmp_path / "ours", tmp_path / "arcee", to="arcee")
    arcee = AutoModelForCausalLM.from_pretrained(tmp_path / "arcee").eval()
    assert type(arcee) is ArceeForCausalLM
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        assert (arcee(ids).logits - model(ids).logits).abs().max() < 1e-5
    export_checkpoint(tmp_path / "arcee", tmp_path / "back", to="fuxitranyu")
    original = load_file(tmp_path / "ours" / "model.safetensors")
    back = load_file(tmp_path / "back" / "model.safetensors")
    assert original.keys() == back.keys()
    assert all(torch.equal(original[k], back[k]) for k in original)
    assert json.loads((tmp_path / "back" / "config.json").read_text())["model_type"] == "fuxitranyu"


def test_export_refuses_a_checkpoint_whose_logits_differ(tmp_path, tiny_config, monkeypatch):
    from fuxitranyu.errors import FuxiError
    from fuxitranyu.model import export

    torch.manual_seed(0)
    FuxiTranyuForCausalLM(tiny_config).save_pretrained(tmp_path / "ours")
    # A planted conversion bug: the activation is not carried over, so Arcee falls back to its default (relu2).
    monkeypatch.setattr(export, "ARCHITECTURE_FIELDS",
                        tuple(f for f in export.ARCHITECTURE_FIELDS if f != "hidden_act"))
    with pytest.raises(FuxiError, match="computes different logits"):
        export.export_checkpoint(tmp_path / "ours", tmp_path / "arcee", to="arcee")
    assert not (tmp_path / "arcee").exists() and not list(tmp_path.glob(".arcee*"))  # nothing left behind


def test_exported_directory_serves_on_its_own(tmp_path, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    config = preset_config("tiny", vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    FuxiTranyuForCausalLM(config).save_pretrained(tmp_path / "ours")
    difference = export_checkpoint(tmp_path / "ours", tmp_path / "arcee", to="arcee", tokenizer_dir=tiny_tokenizer_dir)
    assert difference is not None and difference <= 1e-4
    files = {p.name for p in (tmp_path / "arcee").iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "chat_template.jinja"} <= files
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "arcee")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "arcee")
    assert type(model) is ArceeForCausalLM and model.generation_config.eos_token_id == 0
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Bonjour"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 4


def test_resize_vocab_pads_to_multiple(tiny_config):
    model = FuxiTranyuForCausalLM(tiny_config)
    before = model.model.embed_tokens.weight[:10].clone()
    model.resize_token_embeddings(1000, pad_to_multiple_of=128)
    assert model.config.vocab_size == 1024
    assert model.model.embed_tokens.weight.shape[0] == 1024 and model.lm_head.weight.shape[0] == 1024
    assert torch.equal(model.model.embed_tokens.weight[:10], before)


def test_gradient_checkpointing_gives_same_gradients(tiny_config):
    torch.manual_seed(0)
    model = FuxiTranyuForCausalLM(tiny_config)
    ids = torch.randint(0, 512, (2, 16))

    def grads():
        model.zero_grad()
        model(ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    model.train()
    plain = grads()
    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    checkpointed = grads()
    model.activation_checkpointing_disable()
    assert not model.is_activation_checkpointing
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], rtol=1e-5, atol=1e-6)
