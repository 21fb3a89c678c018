"""The analyses (paper section 6): known answers on tiny random models of several families, the outputs of the stage
and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.pytorch_utils import Conv1D

from fuxitranyu.analyze.batches import Encoded, encode, plan_batches, run_batches
from fuxitranyu.analyze.hooks import LastTokenHooks, find_layout, is_norm, is_projection
from fuxitranyu.analyze.inputs import ParallelTexts, aligned_texts, order_by_share, training_shares
from fuxitranyu.analyze.neurons import neuron_importance, sentence_losses
from fuxitranyu.analyze.representations import representation_similarity
from fuxitranyu.data.parallel import read_parallel
from fuxitranyu.errors import FuxiError
from fuxitranyu.model import FuxiTranyuForCausalLM, preset_config
from fuxitranyu.model.modeling import FuxiTranyuRMSNorm

CPU = torch.device("cpu")
VOCAB = 320
UNITS = [
    {"en": "The cat sleeps on the warm mat.", "fr": "Le chat dort sur le tapis chaud.",
     "de": "Die Katze schläft auf der warmen Matte.", "zh": "猫睡在温暖的垫子上。",
     "ar": "القطة تنام على الحصيرة الدافئة."},
    {"en": "Open the file", "fr": "Ouvrir le fichier", "de": "Datei öffnen", "zh": "打开文件", "ar": "افتح الملف"},
    {"en": "Saving failed: disk full.", "fr": "Échec de l'enregistrement : disque plein.",
     "de": "Speichern fehlgeschlagen: Datenträger voll.", "zh": "保存失败：磁盘已满。",
     "ar": "فشل الحفظ: القرص ممتلئ."},
    {"en": "yes", "fr": "oui", "de": "ja", "zh": "是", "ar": "نعم"},
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second thread only adds the thread pool's overhead, large on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained on the test sentences: every script encodes, nothing is downloaded."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text for unit in UNITS for text in unit.values()], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


@pytest.fixture(scope="module")
def texts():
    return ParallelTexts(("en", "fr", "de"), tuple(map(str, range(len(UNITS)))),
                         {lang: [unit[lang] for unit in UNITS] for lang in ("en", "fr", "de")})


def build(family: str, dtype=torch.float64) -> torch.nn.Module:
    """A tiny random model of one family, built from its config (no download)."""
    torch.manual_seed(0)
    small = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4)
    if family == "fuxitranyu":
        model = FuxiTranyuForCausalLM(preset_config("tiny", **small, intermediate_size=64, num_hidden_layers=2,
                                                    head_dim=8, max_position_embeddings=64))
    elif family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**small, intermediate_size=64, num_hidden_layers=2, num_key_value_heads=2,
                                             max_position_embeddings=64))
    elif family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    elif family == "bloom":
        model = BloomForCausalLM(BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4))
    elif family == "gpt_neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**small, intermediate_size=64, num_hidden_layers=2,
                                                 max_position_embeddings=64))
    elif family == "phi3":
        model = Phi3ForCausalLM(Phi3Config(**small, intermediate_size=64, num_hidden_layers=2, num_key_value_heads=2,
                                           max_position_embeddings=64, pad_token_id=0))
    else:
        raise ValueError(family)
    return model.to(dtype).eval()


EIGHT = ("attn_norm", "q", "k", "v", "o", "mlp_norm", "mlp_up", "mlp_down")
NINE = ("attn_norm", "q", "k", "v", "o", "mlp_norm", "mlp_gate", "mlp_up", "mlp_down")


# ----------------------------------------------------------------------------------------------------------------
# Hooks find the components


@pytest.mark.parametrize("family, components", [("fuxitranyu", EIGHT), ("llama", NINE), ("gpt2", EIGHT),
                                                ("bloom", EIGHT), ("gpt_neox", EIGHT), ("phi3", NINE)])
def test_hooks_find_every_component(family, components):
    model = build(family, torch.float32)
    layout = find_layout(model)
    assert layout.components == components and len(layout.layers) == 2
    tracked = {t.path for t in layout.modules}
    for index, layer in enumerate(layout.layers):
        prefix = f"{layout.layers_path}.{index}"
        projections = {f"{prefix}.{name}" for name, m in layer.named_modules() if is_projection(m)}
        norms = {f"{prefix}.{name}" for name, m in layer.named_children() if is_norm(m)}
        assert projections | norms == {t.path for t in layout.modules if t.layer == index}
        assert len(norms) == 2
    assert len(tracked) == len(layout.modules)
    assert layout.final_norm is not None


def test_unsupported_layout_names_the_model_class():
    mixtral = MixtralForCausalLM(MixtralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                               num_local_experts=2))
    with pytest.raises(FuxiError, match="MixtralForCausalLM: cannot map model.layers.0 .*MLP none"):
        find_layout(mixtral)

    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(4, 4)

    with pytest.raises(FuxiError, match="Bare: found no list of identical decoder layers"):
        find_layout(Bare())


# ----------------------------------------------------------------------------------------------------------------
# Neuron importance: known answers


def _unit_derivatives(model, module, width: int, units: np.ndarray, epsilon: float, ids: list[int]) -> np.ndarray:
    """dL/dα at α = 1 for each unit, by central differences: one forward of 2 × len(units) copies of the sentence
    (no padding), copy 2j scaling unit j's output by 1 + ε at every position, copy 2j + 1 by 1 - ε."""
    rows = torch.arange(2 * len(units))
    scale = torch.ones(len(rows), width, dtype=torch.float64)
    scale[rows, torch.as_tensor(units).repeat_interleave(2)] = torch.tensor(
        [1 + epsilon, 1 - epsilon], dtype=torch.float64).repeat(len(units))
    handle = module.register_forward_hook(lambda m, args, output: output * scale[:, None, :])
    try:
        batch = torch.tensor([ids] * len(rows))
        mask = torch.ones_like(batch)
        losses = sentence_losses(model(input_ids=batch, attention_mask=mask).logits, batch, mask).numpy()
    finally:
        handle.remove()
    return (losses[0::2] - losses[1::2]) / (2 * epsilon)


def _exact_rms_norm(self, hidden_states):
    """Our RMSNorm in the input's dtype (the model's own computes in fp32, which limits an fp64 check to ~1e-3)."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


@pytest.mark.parametrize("family, epsilon, rtol", [("fuxitranyu", 1e-4, 1e-5), ("gpt2", 1e-4, 1e-5),
                                                   ("bloom", 1e-3, 5e-3)])
@torch.no_grad()
def test_unit_importance_equals_finite_differences(family, epsilon, rtol, tokenizer, texts, monkeypatch):
    """Φ_l(i) = mean over sentences of |dL_s/dα| at α = 1 when unit i's output is scaled by α at every position:
    brute force, one sentence at a time (no batching, no padding), by central differences. fp64 models; BLOOM keeps
    its attention scores in fp32, hence its looser tolerance."""
    monkeypatch.setattr(FuxiTranyuRMSNorm, "forward", _exact_rms_norm)
    model = build(family)
    layout = find_layout(model)
    result = neuron_importance(model, tokenizer, texts, name=family, batch_tokens=48, device=CPU, layout=layout)
    encoded = encode(tokenizer, texts.by_language(), None)
    rng = np.random.default_rng(0)
    for tracked in layout.modules[::3]:
        measured = result.units[tracked.path]
        units = rng.choice(measured.shape[1], size=4, replace=False)
        brute = np.zeros((len(texts.languages), len(units)))
        for ids, language in zip(encoded.ids, encoded.language):
            brute[language] += np.abs(_unit_derivatives(model, tracked.module, measured.shape[1], units, epsilon, ids))
        np.testing.assert_allclose(measured[:, units], brute / len(texts.unit_ids), rtol=rtol,
                                   atol=1e-4 * rtol * measured.max(), err_msg=f"{family} {tracked.path}")


def test_components_sum_their_units_and_first_order_predicts_zeroing(tokenizer, texts):
    """A component's importance is the sum of its units' (paper eq. 3); and to first order, zeroing a unit changes
    the loss by about its importance (the paper's eq. 1 vs. eq. 2) for small units."""
    model = build("fuxitranyu")
    layout = find_layout(model)
    result = neuron_importance(model, tokenizer, texts, name="m", batch_tokens=4096, device=CPU, layout=layout)
    for tracked in layout.modules:
        column = layout.components.index(tracked.components[0])
        np.testing.assert_allclose(result.importance[:, tracked.layer, column], result.units[tracked.path].sum(1))
    np.testing.assert_allclose(result.layer_importance, result.importance.sum(2))
    np.testing.assert_allclose(result.share.sum(axis=(1, 2)), 1.0)


def test_bf16_gives_the_fp32_picture(tokenizer, texts):
    """The bf16 path (weights and activations in bf16, loss in fp32, sums in fp64) runs and agrees with fp32."""
    model = build("fuxitranyu", torch.float32)
    exact = neuron_importance(model, tokenizer, texts, name="fp32", batch_tokens=4096, device=CPU)
    similar = representation_similarity(model, tokenizer, texts, name="fp32", batch_tokens=4096, device=CPU)
    model.to(torch.bfloat16)
    rough = neuron_importance(model, tokenizer, texts, name="bf16", batch_tokens=4096, device=CPU)
    np.testing.assert_allclose(rough.layer_importance, exact.layer_importance, rtol=0.1)
    rough_similar = representation_similarity(model, tokenizer, texts, name="bf16", batch_tokens=4096, device=CPU)
    np.testing.assert_allclose(rough_similar.similarity, similar.similarity, atol=0.05)


def test_component_forced_to_zero_has_zero_importance(tokenizer, texts):
    """Zeroing layer 0's o_proj zeroes o's importance, and (chain rule) that of everything whose only way to the
    loss went through it: layer 0's attn_norm, q, k, v. Likewise layer 1's mlp_down, mlp_up, mlp_norm. Nothing
    else."""
    model = build("fuxitranyu")
    with torch.no_grad():
        for projection in (model.model.layers[0].self_attn.o_proj, model.model.layers[1].mlp.down_proj):
            projection.weight.zero_()
            projection.bias.zero_()
    result = neuron_importance(model, tokenizer, texts, name="m", batch_tokens=4096, device=CPU)
    zero = {(0, c) for c in ("attn_norm", "q", "k", "v", "o")} | {(1, "mlp_norm"), (1, "mlp_up"), (1, "mlp_down")}
    for layer in range(2):
        for column, component in enumerate(result.components):
            values = result.importance[:, layer, column]
            assert ((values == 0) if (layer, component) in zero else (values > 0)).all(), (layer, component)


def _attention_change(model, fused, out, units: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Positions at which the attention output (the input of the output projection) changes when `units` of the
    fused projection get +1 at position 1 only."""
    seen = []
    capture = out.module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))

    def perturb(module, args, output):
        output = output.clone()
        output[:, 1, units] += 1.0
        return output

    with torch.no_grad():
        model(input_ids=ids)
        handle = fused.module.register_forward_hook(perturb)
        model(input_ids=ids)
        handle.remove()
    capture.remove()
    return (seen[1] - seen[0]).abs().amax(dim=-1)[0] > 1e-9


@pytest.mark.parametrize("family", ["gpt2", "bloom", "gpt_neox", "phi3"])
def test_fused_qkv_split_matches_the_models_own_use(family, tokenizer, texts):
    """The model itself says which units are q, k and v: a query at position 1 changes only position 1's attention
    output, a key at position 1 changes the later positions' too, and zeroing the v units zeroes the output (and v's
    importance)."""
    model = build(family)
    layout = find_layout(model)
    fused = next(t for t in layout.modules if t.layer == 0 and "v" in t.components)
    out = next(t for t in layout.modules if t.layer == 0 and t.components == ("o",))
    part = {name: fused.unit_component == index for index, name in enumerate(fused.components)}
    ids = torch.tensor([tokenizer(UNITS[0]["en"])["input_ids"]])
    assert _attention_change(model, fused, out, part["q"], ids).tolist() == [False, True] + [False] * (ids.shape[1] - 2)
    assert _attention_change(model, fused, out, part["k"], ids)[2:].all()
    with torch.no_grad():
        if isinstance(fused.module, Conv1D):  # weight (in, out)
            fused.module.weight[:, part["v"]] = 0
        else:  # nn.Linear: weight (out, in)
            fused.module.weight[part["v"]] = 0
        if fused.module.bias is not None:
            fused.module.bias[part["v"]] = 0
    seen = []
    handle = out.module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().abs().max()))
    result = neuron_importance(model, tokenizer, texts, name=family, batch_tokens=4096, device=CPU, layout=layout)
    handle.remove()
    assert max(seen) == 0
    assert (result.importance[:, 0, result.components.index("v")] == 0).all()
    assert (result.importance[:, 1, result.components.index("v")] > 0).all()


# ----------------------------------------------------------------------------------------------------------------
# Representations


def test_identical_text_under_two_names_has_similarity_one(tokenizer, tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "texts": {"en": u["en"], "fr": u["en"], "de": u["de"],
                                                                "zh": u["zh"]}}) + "\n"
                            for i, u in enumerate(UNITS)), encoding="utf-8")
    texts = aligned_texts(read_parallel([path]), ["en", "fr", "de", "zh"], None, seed=0)
    for family in ("fuxitranyu", "gpt2"):
        result = representation_similarity(build(family), tokenizer, texts, name=family, batch_tokens=40,
                                           device=CPU)
        assert result.points == ("emb", "0", "1")
        np.testing.assert_allclose(result.similarity[:, 0, 1], 1.0, atol=1e-9)
        np.testing.assert_allclose(np.diagonal(result.similarity, axis1=1, axis2=2), 1.0, atol=1e-9)
        assert (result.similarity[:, 0, 2] < 1 - 1e-3).all()
        off = result.similarity[:, ~np.eye(4, dtype=bool)]
        np.testing.assert_allclose(result.mean_similarity, off.mean(1))


@pytest.mark.parametrize("family", ["llama", "gpt2", "bloom"])
def test_similarity_equals_cosine_of_transformers_hidden_states(family, tokenizer, texts):
    """The reference: transformers' own `output_hidden_states`, one sentence at a time, at the last token."""
    model = build(family)
    result = representation_similarity(model, tokenizer, texts, name=family, batch_tokens=40, device=CPU)
    encoded = encode(tokenizer, texts.by_language(), None)
    sums = np.zeros((3, len(texts.languages), 32))
    with torch.no_grad():
        for ids, language in zip(encoded.ids, encoded.language):
            states = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            sums[:, language] += np.stack([s[0, -1].numpy() for s in states])
    unit = sums / np.linalg.norm(sums, axis=-1, keepdims=True)
    np.testing.assert_allclose(result.similarity, unit @ unit.transpose(0, 2, 1), atol=1e-10)


def test_last_token_hooks_do_not_count_a_failed_batch():
    layout = find_layout(build("fuxitranyu", torch.float32))
    hooks = LastTokenHooks(layout, 2)
    hooks.start(torch.tensor([0, 1]), torch.tensor([0, 0]))
    hooks._keep(0, torch.ones(2, 1, 4))
    hooks.start(torch.tensor([1]), torch.tensor([0]))  # the retry of a batch that ran out of memory
    hooks._keep(0, torch.full((1, 1, 4), 2.0))
    hooks.commit()
    assert hooks.counts.tolist() == [0, 1] and hooks.sums[0, 1].tolist() == [2.0] * 4


# ----------------------------------------------------------------------------------------------------------------
# Batching and inputs


def test_batches_respect_the_token_budget():
    lengths = [5, 9, 3, 9, 1, 30, 4]
    batches = plan_batches(lengths, 20)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [5]  # longer than the budget: alone, first
    assert all(len(b) * max(lengths[i] for i in b) <= 20 for b in batches if len(b) > 1)


def test_out_of_memory_halves_the_batch():
    encoded = Encoded([[1, 2, 3]] * 5 + [[1, 2]], [0, 0, 1, 1, 1, 0], 0, 0)
    seen = []

    def step(batch):
        if len(batch.language) > 1:
            raise torch.OutOfMemoryError("simulated")
        seen.append(int(batch.language[0]))

    assert run_batches(encoded, 100, step, CPU, "test") == 5
    assert sorted(seen) == [0, 0, 0, 1, 1, 1]

    def never(batch):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(FuxiError, match="one sentence of 3 tokens does not fit"):
        run_batches(encoded, 100, never, CPU, "test")


def test_aligned_texts_and_flores_layout(tmp_path):
    flores = tmp_path / "flores200_dataset" / "devtest"
    flores.mkdir(parents=True)
    for code, lines in {"eng_Latn": ["a", "b", "c"], "fra_Latn": ["x", "y", "z"], "slk_Latn": ["s", "t", "u"],
                        "zho_Hans": ["一", "二", "三"]}.items():
        (flores / f"{code}.devtest").write_text("\n".join(lines) + "\n", encoding="utf-8")
    parallel = read_parallel([tmp_path / "flores200_dataset"], keep_unsupported=True)
    texts = aligned_texts(parallel, ["en", "slk_Latn", "zh"], 2, seed=3)
    assert texts.languages == ("en", "slk_Latn", "zh") and len(texts.unit_ids) == 2
    assert texts == aligned_texts(parallel, ["en", "slk_Latn", "zh"], 2, seed=3)
    assert [texts.texts["en"].index(t) for t in texts.texts["en"]] == [0, 1]
    assert "slk_Latn" not in {lang for unit in read_parallel([flores]).units for lang in unit["texts"]}
    with pytest.raises(FuxiError, match="not in the parallel set: ja .it has en 3"):
        aligned_texts(parallel, ["en", "ja"], None, seed=0)


def test_languages_ordered_by_share_of_the_mix(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"sampled_tokens": {"en": 10, "de": 30, "fr": 20}}))
    assert training_shares(tmp_path)["de"] == pytest.approx(0.5)
    assert order_by_share(["en", "fr", "de", "xx"], training_shares(tmp_path)) == ["de", "fr", "en", "xx"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"languages": [{"language": "en", "tokens": 3}, {"language": "fr", "tokens": 1}]}))
    assert training_shares(plan) == {"en": 0.75, "fr": 0.25}
    (tmp_path / "index.json").write_text("{}")
    with pytest.raises(FuxiError, match="not a mix index or plan"):
        training_shares(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# The stage and the CLI


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tokenizer):
    """A finished run as the analyze stage reads it: data/parallel, mix/index.json, pretrain/model and three
    pretrain checkpoints (each stage with a manifest)."""
    run = tmp_path_factory.mktemp("run")
    parallel = run / "data" / "parallel"
    parallel.mkdir(parents=True)
    (parallel / "set.jsonl").write_text("".join(json.dumps({"id": f"u{i}", "texts": unit}, ensure_ascii=False) + "\n"
                                                for i, unit in enumerate(UNITS)), encoding="utf-8")
    (run / "mix").mkdir()
    (run / "mix" / "index.json").write_text(json.dumps({"sampled_tokens": {"zh": 50, "en": 30, "de": 20, "fr": 5}}))
    model = build("fuxitranyu", torch.float32)
    model.save_pretrained(run / "pretrain" / "model")
    tokenizer.save_pretrained(run / "pretrain" / "model")
    for step in (1, 2, 3):
        folder = run / "pretrain" / "checkpoints" / f"step-{step:06d}"
        model.save_pretrained(folder)
        (folder / "checkpoint.json").write_text(json.dumps({"step": step, "tokens": 100 * step, "files": {}}))
    for stage in ("data", "mix", "pretrain"):
        (run / stage / "manifest.json").write_text(json.dumps({"fingerprint": stage}))
    return run


def _rows(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_stage_writes_tables_and_figures(run_dir):
    from fuxitranyu import pipeline
    from fuxitranyu.recipe import load_recipe

    recipe = load_recipe("tiny", [f"output_dir={run_dir}", "analyze.checkpoints=2", "analyze.max_sentences=3",
                                  "analyze.precision=fp32", "analyze.neurons.languages=[en, fr, de]",
                                  "analyze.representations.languages=[en, fr, de, zh]"])
    planned = pipeline.plan_stages(recipe, only=["analyze"])
    assert [(p.stage.name, sorted(p.inputs)) for p in planned] == [("analyze", ["data", "mix", "pretrain"])]
    manifest = pipeline.run_pipeline(recipe, only=["analyze"])[0]
    out = run_dir / "analyze"
    models = [(m["name"], m["tokens_seen"], m.get("same_as")) for m in manifest["stats"]["models"]]
    assert models == [("pretrain", None, None), ("step-000001", 100, None), ("step-000003", 300, "pretrain")]
    rows = _rows(out / "neurons" / "importance.csv")
    assert len(rows) == 3 * 3 * 2 * 8
    assert {(r["model"], r["tokens_seen"]) for r in rows} == {("pretrain", ""), ("step-000001", "100"),
                                                              ("step-000003", "300")}
    assert all(float(r["importance"]) > 0 for r in rows)
    last = [r for r in rows if r["model"] == "step-000003"]
    assert [r["importance"] for r in last] == [r["importance"] for r in rows if r["model"] == "pretrain"]
    similarity = json.loads((out / "representations" / "similarity.json").read_text())
    assert similarity["models"][0]["languages"] == ["zh", "en", "de", "fr"]  # by share of the mix
    assert similarity["models"][0]["points"] == ["emb", "0", "1"]
    means = _rows(out / "representations" / "mean_similarity.csv")
    assert len(means) == 3 * 3
    inputs = json.loads((out / "neurons" / "inputs.json").read_text())
    assert inputs["parallel"]["units"] == 3 and inputs["precision"]["precision"] == "fp32"
    for figure in ("neurons/layers-pretrain.png", "neurons/components-pretrain.png", "neurons/evolution.png",
                   "representations/heatmap.png", "representations/mean_similarity.png",
                   "representations/evolution.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG", figure
    assert manifest["stats"]["neurons"]["sha256"] == inputs["parallel"]["sha256"]
    assert [p.action for p in pipeline.plan_stages(recipe, only=["analyze"])] == ["skip"]


def test_cli_compares_models_and_checkpoints(run_dir, tmp_path, capsys):
    from fuxitranyu.cli import main

    out = tmp_path / "analysis"
    arguments = ["--parallel", str(run_dir / "data" / "parallel"), "--language", "en,de", "--language", "zh",
                 "--precision", "fp32", "--out-dir", str(out), "--no-figures"]
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "representations", f"ours={run_dir / 'pretrain' / 'model'}",
              str(run_dir / "pretrain" / "checkpoints"), "--checkpoints", "2", *arguments])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "mean similarity between languages" in printed and "step-000003" in printed
    rows = _rows(out / "representations" / "mean_similarity.csv")
    assert sorted({r["model"] for r in rows}) == ["ours", "step-000001", "step-000003"]
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "neurons", str(run_dir / "pretrain" / "model"), *arguments, "--save-units"])
    assert exit_info.value.code == 0
    units = np.load(out / "neurons" / "units-model.npz")
    assert units["languages"].tolist() == ["en", "de", "zh"]
    assert units["model.layers.0.self_attn.q_proj"].shape == (3, 32)
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "neurons", str(tmp_path / "nowhere"), *arguments])
    assert exit_info.value.code == 2
    assert "no such model directory" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, code, message", [
    (["--heatmap-layer", "99"], 2, "heatmap layer 99 does not exist: model has 2 decoder layers"),
    (["--heatmap-layer", "-3"], 2, "heatmap layer -3 does not exist"),
    (["--heatmap-layer", "-1"], 0, ""),
    (["--checkpoints", "0"], 2, "Invalid value for '--checkpoints'"),
    (["--checkpoints", "-1"], 2, "Invalid value for '--checkpoints'"),
    (["--max-sentences", "-3"], 2, "Invalid value for '--max-sentences'"),
])
def test_cli_arguments_out_of_range_are_one_clear_error(run_dir, tmp_path, capsys, arguments, code, message):
    from fuxitranyu.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "representations", str(run_dir / "pretrain" / "model"), "--parallel",
              str(run_dir / "data" / "parallel"), "--precision", "fp32", "--out-dir", str(tmp_path), *arguments])
    printed = capsys.readouterr()
    assert exit_info.value.code == code, printed.err
    assert message in " ".join(printed.err.split()) and "Traceback" not in printed.err
    if code == 0:
        assert json.loads((tmp_path / "representations" / "similarity.json").read_text())["models"]
        assert (tmp_path / "representations" / "heatmap.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("command", [["analyze"], ["analyze", "neurons"], ["analyze", "representations"],
                                     ["analyze", "run"]])
def test_analyze_commands_have_help(command, capsys):
    from fuxitranyu.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "Usage: fuxitranyu" in capsys.readouterr().out


@pytest.mark.parametrize("override, message", [
    ("analyze.models=[]", "name at least one stage"),
    ("analyze.neurons.languages=[en, en_US]", "analyze.neurons.languages' .*: en listed twice"),
    ("analyze.models=[a=/x, a=/y]", "two entries are named a"),
    ("analyze.neurons=null", None),
])
def test_recipe_section_is_validated(override, message):
    from fuxitranyu.errors import RecipeError
    from fuxitranyu.recipe import load_recipe

    if message is None:
        both = ["analyze.neurons=null", "analyze.representations=null"]
        with pytest.raises(RecipeError, match="both null"):
            load_recipe("tiny", both)
        assert load_recipe("tiny", [override]).analyze.neurons is None
        return
    with pytest.raises(RecipeError, match=message):
        load_recipe("tiny", [override])
