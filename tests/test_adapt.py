"""Adapting existing models: the trainer on stock Hugging Face architectures, checked against transformers' own loss
and gradients."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fuxitranyu.errors import FuxiError
from fuxitranyu.pretrain.architecture import trainable_parts
from fuxitranyu.pretrain.config import PretrainSection
from fuxitranyu.pretrain.loss import CausalLMLoss
from fuxitranyu.pretrain.train import make_optimizer

VOCAB = 97


def stock_model(family: str, seed: int = 0):
    """A tiny random model of a stock family, built from its config class (eager attention: the reference)."""
    import transformers

    small = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    configs = {
        "llama": transformers.LlamaConfig(**small, intermediate_size=64, num_key_value_heads=2,
                                          max_position_embeddings=64),
        "qwen2": transformers.Qwen2Config(**small, intermediate_size=64, num_key_value_heads=2,
                                          max_position_embeddings=64),
        "mistral": transformers.MistralConfig(**small, intermediate_size=64, num_key_value_heads=2,
                                              max_position_embeddings=64, sliding_window=None),
        "gpt_neox": transformers.GPTNeoXConfig(**small, intermediate_size=64, max_position_embeddings=64),
        "bloom": transformers.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4),
    }
    torch.manual_seed(seed)
    config = configs[family]
    config._attn_implementation = "eager"
    return transformers.AutoModelForCausalLM.from_config(config).float()


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "gpt_neox", "bloom"])
def test_first_step_loss_and_gradients_equal_transformers_own(family):
    """The trainer's loss (its own fused output layer and cross-entropy, on the model's body) against
    `model(ids, labels=ids).loss` and its backward, on two copies of the same random model."""
    ours_model, reference = stock_model(family), stock_model(family)
    ids = torch.randint(0, VOCAB, (3, 17), generator=torch.Generator().manual_seed(1))
    expected = reference(input_ids=ids, labels=ids).loss
    expected.backward()
    total, losses = CausalLMLoss(ours_model, chunk_tokens=7)(ids[:, :-1], ids[:, 1:])
    (total / losses.numel()).backward()
    assert (total / losses.numel()).item() == pytest.approx(expected.item(), rel=1e-6)
    theirs = dict(reference.named_parameters())
    for name, parameter in ours_model.named_parameters():
        torch.testing.assert_close(parameter.grad, theirs[name].grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("family, embeddings", [("llama", 2), ("gpt_neox", 2), ("bloom", 1)])
def test_embeddings_are_found_by_role_and_not_decayed(family, embeddings):
    model = stock_model(family)
    parts = trainable_parts(model)
    assert len(parts.embeddings) == embeddings  # BLOOM ties its output layer to the input embeddings
    assert len(parts.layers) == 2
    optimizer = make_optimizer(model, PretrainSection(), parts.embeddings)
    no_decay = {id(p) for p in optimizer.param_groups[1]["params"]}
    assert all(id(table) in no_decay for table in parts.embeddings)
    decayed = optimizer.param_groups[0]["params"]
    assert decayed and all(p.ndim >= 2 and id(p) not in no_decay for p in decayed)


def test_models_whose_logits_are_not_the_output_layers_are_refused():
    import transformers

    gemma = transformers.Gemma2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    with pytest.raises(FuxiError, match=r"Gemma2ForCausalLM cannot be trained here: logits transformed after the "
                                        r"output layer \(final_logit_softcapping\)"):
        trainable_parts(transformers.AutoModelForCausalLM.from_config(gemma))
    phi = transformers.PhiConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4)
    with pytest.raises(FuxiError, match="PhiForCausalLM cannot be trained here: an output layer with a bias"):
        trainable_parts(transformers.AutoModelForCausalLM.from_config(phi))


KILL_9_AT_STEP = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_pretrain import toy_recipe
from fuxitranyu.pretrain.train import Trainer

root, model_dir, step = Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
trainer = Trainer(toy_recipe(root), model_dir, root / "mix", root / "killed")
original = trainer.step
def dying(*args):
    if trainer.state.step == step:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args)
trainer.step = dying
trainer.train()
"""


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_continued_pretraining_of_a_stock_model_learns_and_resumes_exactly_after_kill_9(tmp_path, family):
    """A stock checkpoint trained by our trainer on the toy mix: the loss falls, and a run SIGKILLed in the middle
    resumes to the uninterrupted run's loss curve and final weights (the checkpoints are the family's own format)."""
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file
    from test_pretrain import VOCAB as TOY_VOCAB
    from test_pretrain import losses, toy_recipe, toy_run

    from fuxitranyu.pretrain.checkpoint import list_checkpoints
    from fuxitranyu.pretrain.train import Trainer

    toy_run(tmp_path)  # the mix (and a FuxiTranyu model we do not use)
    base = tmp_path / family
    model = stock_model(family)
    model.resize_token_embeddings(TOY_VOCAB)
    model.config.max_position_embeddings = 64
    model.save_pretrained(base)
    Trainer(toy_recipe(tmp_path), base, tmp_path / "mix", tmp_path / "reference").train()
    reference = losses(tmp_path / "reference")
    assert np.mean([loss for _, loss in reference[-5:]]) < np.mean([loss for _, loss in reference[:3]]) - 0.5

    killed = subprocess.run([sys.executable, "-c", KILL_9_AT_STEP, str(Path(__file__).parent), str(tmp_path),
                             str(base), "27"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    trainer = Trainer(toy_recipe(tmp_path), base, tmp_path / "mix", tmp_path / "killed")
    assert trainer.resume()
    trainer.train()
    assert losses(tmp_path / "killed") == reference
    last = [list_checkpoints(tmp_path / run / "checkpoints")[-1] for run in ("reference", "killed")]
    assert type(trainer.model).__name__ == type(model).__name__
    weights = [load_file(path / "model.safetensors") for path in last]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_fsdp_trains_a_stock_model_as_one_process_does(tmp_path):
    """FSDP2 over two processes (gloo) wraps a stock Llama's decoder layers as it wraps ours: the losses and the
    checkpointed weights of one process."""
    import shutil

    from test_pretrain import VOCAB as TOY_VOCAB
    from test_pretrain import assert_two_processes_train_as_one, toy_run

    model_dir, _ = toy_run(tmp_path)  # the mix, and a FuxiTranyu model replaced by the Llama
    shutil.rmtree(model_dir)
    model = stock_model("llama")
    model.resize_token_embeddings(TOY_VOCAB)
    model.config.max_position_embeddings = 64
    model.save_pretrained(model_dir)
    assert_two_processes_train_as_one(tmp_path, "fsdp")


def base_model_dir(folder, family="llama", texts=None):
    """A stock model directory with its own tokenizer, as one downloads them: a byte-level BPE tokenizer (</s> its
    end of text) trained on a few sentences, and a random model of that vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = texts or ["the quick brown fox jumps over the lazy dog", "le renard brun saute par-dessus le chien",
                      "der schnelle braune Fuchs springt über den faulen Hund"] * 20
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["</s>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>")
    tokenizer.save_pretrained(folder)
    model = stock_model(family)
    model.resize_token_embeddings(len(tokenizer))
    model.config.max_position_embeddings = 256
    model.config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    return folder


def test_recipe_values_for_a_base_model_are_checked(tmp_path):
    from fuxitranyu.errors import RecipeError
    from fuxitranyu.recipe import load_recipe

    base = base_model_dir(tmp_path / "base")
    with pytest.raises(RecipeError, match="model.init_from needs tokenizer.base"):
        load_recipe("smoke", [f"model.init_from={base}", "model.overrides={}"])
    with pytest.raises(RecipeError, match="model.overrides do not apply with model.init_from"):
        load_recipe("smoke", [f"model.init_from={base}", f"tokenizer.base={base}"])
    with pytest.raises(RecipeError, match="is not a readable Hugging Face config"):
        load_recipe("smoke", [f"model.init_from={tmp_path / 'nothing'}", f"tokenizer.base={base}",
                              "model.overrides={}"])
    with pytest.raises(RecipeError, match="mix.context_length 512 is longer than the model's max_position_embeddings"):
        load_recipe("smoke", [f"model.init_from={base}", f"tokenizer.base={base}", "model.overrides={}",
                              "mix.context_length=512"])


def test_a_run_continues_a_stock_model_with_its_own_tokenizer(tmp_path):
    """The smoke run's data, a Llama checkpoint and its tokenizer: the tokenizer stage takes the base tokenizer as it
    is (and measures its fertility), the model stage copies the weights unchanged, the mix is encoded with the base's
    ids and end of text, and pretraining continues the Llama."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fuxitranyu import pipeline
    from fuxitranyu.mix.artifacts import read_index
    from fuxitranyu.recipe import load_recipe

    base = base_model_dir(tmp_path / "base")
    recipe = load_recipe("smoke", [f"output_dir={tmp_path / 'run'}", f"model.init_from={base}",
                                   f"tokenizer.base={base}", "model.overrides={}", "pretrain.total_tokens=16384",
                                   "pretrain.precision=fp32"])
    manifests = {m["stage"]: m for m in pipeline.run_pipeline(recipe, only=["data", "tokenizer", "model", "mix",
                                                                            "pretrain"])}
    run = tmp_path / "run"
    assert manifests["tokenizer"]["stats"]["vocabulary"]["size"] == len(AutoTokenizer.from_pretrained(base))
    assert manifests["tokenizer"]["stats"]["fertility"]["per_language"]
    assert manifests["model"]["stats"]["architecture"] == "LlamaForCausalLM"
    assert load_file(run / "model" / "model.safetensors").keys() == load_file(base / "model.safetensors").keys()
    assert read_index(run / "mix")["vocab_size"] == len(AutoTokenizer.from_pretrained(base))
    trained = AutoModelForCausalLM.from_pretrained(run / "pretrain" / "model")
    assert type(trained).__name__ == "LlamaForCausalLM"
    rows = [json.loads(line) for line in (run / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r and "event" not in r]
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.2  # 8 steps from a random base of 400 ids


THAI = ["คณะกรรมการจะเผยแพร่รายงานประจำปีเกี่ยวกับสภาพแม่น้ำในสัปดาห์หน้า", "ไม่สามารถเปิดไฟล์ได้",
        "ไม่พบไฟล์หรือไดเรกทอรี", "การอนุญาตถูกปฏิเสธ"]


def test_an_extended_tokenizer_keeps_the_base_ids_and_shortens_the_new_language(tmp_path):
    from transformers import AutoTokenizer

    from fuxitranyu.tokenizer.extend import extend_tokenizer, read_extension

    base = base_model_dir(tmp_path / "base")
    with_template = AutoTokenizer.from_pretrained(base)
    with_template.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})
    with_template.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    with_template.save_pretrained(base)
    out = tmp_path / "extended"
    out.mkdir()
    extension = extend_tokenizer(base, out, 100, lambda: iter(THAI * 30), "extension.json")
    before, after = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(out)
    assert after.chat_template == before.chat_template and after.eos_token_id == before.eos_token_id
    assert {t: after.convert_tokens_to_ids(t) for t in ["<|user|>", "<|assistant|>", "</s>"]} == \
        {t: before.convert_tokens_to_ids(t) for t in ["<|user|>", "<|assistant|>", "</s>"]}
    chat = [{"role": "user", "content": "ไม่พบไฟล์"}]
    assert after.decode(after.apply_chat_template(chat, tokenize=True)) == before.apply_chat_template(chat,
                                                                                                     tokenize=False)
    assert len(after) == len(before) + 100 == extension.size
    assert [index for index, _ in extension.added] == list(range(len(before), len(before) + 100))
    assert read_extension(out, "extension.json") == extension
    for text in ["the quick brown fox jumps over the lazy dog", "le renard brun saute", "Hello, 123 — done!"]:
        assert after(text)["input_ids"] == before(text)["input_ids"]
    for text in THAI:
        ids = after(text)["input_ids"]
        assert len(ids) < 0.3 * len(before(text)["input_ids"]) and after.decode(ids) == text
    assert before.get_vocab().items() <= after.get_vocab().items()  # no base id changes meaning


def sentencepiece_style_base(folder):
    """A Llama-2/Mistral-style tokenizer: BPE over "▁"-joined text with byte fallback (<0x00>..<0xFF> in the model's
    vocabulary), no pre-tokenizer, trained on a few Latin-script sentences; Thai is spelled byte by byte."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", *(f"<0x{byte:02X}>" for byte in range(256))]
    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    texts = ["the quick brown fox jumps over the lazy dog", "le renard brun saute par-dessus le chien"] * 20
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=specials))
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(folder)
    return folder


def test_a_sentencepiece_style_tokenizer_extends_with_its_byte_fallback_kept(tmp_path):
    """The other common layout (Llama 2, Mistral): Thai characters become tokens of their own instead of byte
    fallbacks, every Latin-script text keeps its ids, and decoding gives the text back."""
    from transformers import AutoTokenizer

    from fuxitranyu.tokenizer.extend import extend_tokenizer

    base = sentencepiece_style_base(tmp_path / "base")
    before = AutoTokenizer.from_pretrained(base)
    assert before.convert_ids_to_tokens(before(THAI[1], add_special_tokens=False)["input_ids"])[1].startswith("<0x")
    (tmp_path / "extended").mkdir()
    extension = extend_tokenizer(base, tmp_path / "extended", 60, lambda: iter(THAI * 30), "extension.json")
    after = AutoTokenizer.from_pretrained(tmp_path / "extended")
    assert len(after) == len(before) + len(extension.added) and len(extension.added) == 60
    for text in ["the quick brown fox jumps over the lazy dog", "le renard brun saute", "Hello, 123 — done!"]:
        assert after(text)["input_ids"] == before(text)["input_ids"]
    for text in THAI:
        ids = after(text, add_special_tokens=False)["input_ids"]
        assert len(ids) < 0.3 * len(before(text, add_special_tokens=False)["input_ids"])
        assert after.decode(ids) == text
    assert before.get_vocab().items() <= after.get_vocab().items()


def test_an_extension_that_would_move_a_base_id_is_refused(tmp_path, monkeypatch):
    """The guard behind the promise: were the grown tokenizer.json to give a base token another id (here two are
    swapped), the extension stops naming them instead of saving it."""
    from fuxitranyu.tokenizer import extend

    grow = extend.extend_bpe

    def swapping(*args, **kwargs):
        grown, extension = grow(*args, **kwargs)
        vocab = grown["model"]["vocab"]
        vocab["the"], vocab["Ġfox"] = vocab["Ġfox"], vocab["the"]
        return grown, extension

    monkeypatch.setattr(extend, "extend_bpe", swapping)
    base = base_model_dir(tmp_path / "base")
    (tmp_path / "extended").mkdir()
    with pytest.raises(FuxiError, match=r"extending moved base tokens to other ids \(the, Ġfox\)"):
        extend.extend_tokenizer(base, tmp_path / "extended", 50, lambda: iter(THAI * 30), "extension.json")
    assert not (tmp_path / "extended" / "extension.json").exists()


@pytest.mark.parametrize("method", ["mean", "random"])
def test_a_run_extends_the_base_tokenizer_and_initialises_the_new_rows(tmp_path, method):
    """The smoke run's data, a Llama and its tokenizer: the tokenizer stage learns 200 tokens on ru, zh and ja, keeps
    every Latin-script text's ids (no ASCII-only token is added for non-Latin targets), cuts the targets' tokens
    per word; the model stage grows the embeddings, each new
    row the mean of its pieces' rows (computed here from the base checkpoint) or random."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fuxitranyu import pipeline
    from fuxitranyu.recipe import load_recipe
    from fuxitranyu.tokenizer.extend import read_extension

    base = base_model_dir(tmp_path / "base")
    recipe = load_recipe("smoke", [f"output_dir={tmp_path / 'run'}", f"model.init_from={base}",
                                   f"tokenizer.base={base}", "tokenizer.mode=extend", "tokenizer.new_tokens=200",
                                   "tokenizer.languages=[ru, zh, ja]", "model.overrides={}",
                                   f"model.new_rows={method}"])
    manifests = {m["stage"]: m for m in pipeline.run_pipeline(recipe, only=["data", "tokenizer", "model"])}
    run = tmp_path / "run"
    tokenizer = manifests["tokenizer"]["stats"]
    assert tokenizer["vocabulary"]["learned"] == 200
    assert all(tokenizer["unchanged_ids"][lang] == 1.0 for lang in ("en", "fr", "de", "es", "it", "pt"))
    fertility, before = tokenizer["fertility"]["per_language"], tokenizer["fertility"]["compared"]["base"]
    assert all(fertility[lang] < 0.7 * before[lang] for lang in ("ru", "zh", "ja")), (fertility, before)

    extension = read_extension(run / "tokenizer", "extension.json")
    grown = manifests["model"]["stats"]["extension"]
    size = len(AutoTokenizer.from_pretrained(base))  # 344 ids, the base model's rows
    assert (grown["rows_before"], grown["added_tokens"], extension.size) == (size, 200, size + 200)
    assert grown["rows_after"] == 640  # padded to tokenizer.pad_to_multiple_of (128)
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert len(AutoTokenizer.from_pretrained(run / "tokenizer")) == extension.size
    weights, original = model.get_input_embeddings().weight.detach(), load_file(base / "model.safetensors")
    table = original["model.embed_tokens.weight"]
    assert torch.equal(weights[:size], table)  # the base's rows unchanged
    backend = AutoTokenizer.from_pretrained(base).backend_tokenizer
    means = torch.stack([table[[p.id for p in backend.model.tokenize(token)]].mean(0) for _, token in extension.added])
    assert torch.allclose(weights[size:size + 200], means) == (method == "mean")
    assert grown["rows_from_pieces"] == (200 if method == "mean" else 0)


def test_gain_and_forgetting_are_the_relative_change_of_bits_per_byte(tmp_path):
    from fuxitranyu.evaluate.adaptation import write_adaptation
    from fuxitranyu.evaluate.results import ResultRow

    def row(model, language, value, metric="bits_per_byte"):
        return ResultRow(model, "Bits per byte", f"fuxi_bpb_{language}", language, metric, value, None, 0, 3, False)

    rows = [row("base", "th", 4.0), row("pretrain", "th", 3.0), row("base", "lo", 5.0), row("pretrain", "lo", 4.5),
            row("base", "en", 2.0), row("pretrain", "en", 2.1), row("base", "fr", 2.5), row("pretrain", "fr", 2.5),
            row("pretrain", "de", 9.0), row("base", "en", 0.5, metric="acc")]
    result = write_adaptation(rows, "pretrain", {"th", "lo"}, tmp_path, "adaptation-pretrain")
    # th: -25%, lo: -10% -> gain -17.5%; en: +5%, fr: 0% -> +2.5%, worst en; de has no base value: left out
    assert result == {"model": "pretrain", "base": "base", "languages": 4, "targets_mean_change": -0.175,
                      "others_mean_change": 0.025, "others_worst": {"language": "en", "change": 0.05}}
    table = (tmp_path / "adaptation-pretrain.md").read_text()
    assert "| lo | target | 5.000 | 4.500 | -10.0% |" in table and "| en | other | 2.000 | 2.100 | +5.0% |" in table
    saved = json.loads((tmp_path / "adaptation-pretrain.json").read_text())
    assert [r["language"] for r in saved["per_language"]] == ["lo", "th", "en", "fr"]


def test_an_adaptation_run_plans_replay_and_reports_gain_against_forgetting(tmp_path):
    """A Llama adapted to ru, zh and ja on the smoke data: extended tokenizer, UniMax on the targets with 30% replay
    of en, fr and de, the base and the adapted model evaluated side by side, the comparison in the report."""
    from fuxitranyu import pipeline
    from fuxitranyu.recipe import load_recipe

    base = base_model_dir(tmp_path / "base")
    recipe = load_recipe("smoke", [
        f"output_dir={tmp_path / 'run'}", f"model.init_from={base}", "model.overrides={}", f"tokenizer.base={base}",
        "tokenizer.mode=extend", "tokenizer.new_tokens=200", "tokenizer.languages=[ru, zh, ja]",
        "mix.languages=[ru, zh, ja]", "mix.replay={languages: [en, fr, de], share: 0.3}",
        "pretrain.total_tokens=16384", "pretrain.precision=fp32", "sft=null", "dpo=null", "analyze=null",
        "evaluate.models=[base, pretrain]", "evaluate.chat_models=[]", "evaluate.precision=fp32"])
    assert recipe.adaptation_targets() == ["ru", "zh", "ja"]
    manifests = {m["stage"]: m for m in pipeline.run_pipeline(recipe)}
    plan = {row["language"]: row for row in manifests["mix"]["stats"]["plan"]["languages"]}
    assert {lang: row["role"] for lang, row in plan.items()} == {
        "ru": "target", "zh": "target", "ja": "target", "en": "replay", "fr": "replay", "de": "replay"}
    assert sum(plan[lang]["tokens"] for lang in ("en", "fr", "de")) == round(0.3 * 16384)
    adaptation = manifests["evaluate"]["stats"]["adaptation"]["pretrain"]
    saved = json.loads((tmp_path / "run" / "evaluate" / "adaptation-pretrain.json").read_text())
    assert {r["language"] for r in saved["per_language"] if r["target"]} == {"ru", "zh", "ja"}
    assert adaptation["targets_mean_change"] == pytest.approx(
        np.mean([r["change"] for r in saved["per_language"] if r["target"]]), abs=1e-4)
    page = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "pretrain against the base model it continued" in page and "| ru | target |" in page


def test_the_adapt_experiment_runs_its_arms_from_one_base_and_compares_them(tmp_path):
    """On the smoke data (its base languages en fr de es pt it vi ru, its targets ja zh): one base run, four arms
    (reuse/extend x no replay/replay) continuing it, one seed each, and the comparison page read from their files."""
    from rich.console import Console

    from fuxitranyu.experiment.adapt import AdaptSettings, arm_recipes, run_adapt

    settings = AdaptSettings(base_tokens="32768", arm_tokens="16384", new_tokens=100, replay_share=0.3, seeds=1)
    overrides = ["pretrain.precision=fp32", "evaluate.precision=fp32", "model.overrides={}"]
    page = run_adapt("smoke", overrides, settings, tmp_path, Console(quiet=True))
    arms = arm_recipes("smoke", overrides, settings, tmp_path)
    assert [arm.label for arm in arms] == ["reuse-no-replay/seed-1234", "reuse-replay/seed-1234",
                                           "extend-no-replay/seed-1234", "extend-replay/seed-1234"]
    assert arms[3].recipe.mix.replay.languages == ["en", "fr", "de", "es", "pt", "it", "vi", "ru"]
    assert arms[3].recipe.adaptation_targets() == ["ja", "zh"] and arms[0].recipe.mix.replay is None
    assert (tmp_path / "reuse-replay" / "seed-1234" / "data").resolve() == (tmp_path / "base" / "data").resolve()
    saved = json.loads((tmp_path / "adapt.json").read_text())
    assert len(saved["arms"]) == 4 and {a["arm"] for a in saved["arms"]} == {arm.name for arm in arms}
    fertility = {a["arm"]: np.mean([a["fertility"][lang] for lang in ("ja", "zh")]) for a in saved["arms"]}
    assert fertility["extend-replay"] < 0.8 * fertility["reuse-replay"]
    assert [c["verdict"] for c in saved["summary"]["comparisons"]] == ["one seed each: no noise estimate"] * 4
    adaptation = json.loads((tmp_path / "extend-replay" / "seed-1234" / "evaluate" /
                             "adaptation-pretrain.json").read_text())
    changes = {row["language"]: row["change"] for row in adaptation["per_language"]}
    base_languages = [lang for lang in arms[3].base_languages if lang in changes]
    assert len(base_languages) >= 6 and "ja" not in base_languages
    measured = next(a for a in saved["arms"] if a["arm"] == "extend-replay")
    assert measured["base_change"] == pytest.approx(np.mean([changes[lang] for lang in base_languages]))
    assert measured["worst_base_change"] == pytest.approx(max(changes[lang] for lang in base_languages))
    assert measured["base_bits_per_byte"]["ja"] > measured["bits_per_byte"]["ja"]
    assert "Adapting a model to new languages" in page.read_text()


LLAMA_3_1_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
                "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 8, "max_position_embeddings": 131072, "vocab_size": 128256,
                "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": False,
                "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 8192, "rope_type": "llama3"},
                "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu"}
"""Llama 3.1 8B's published config.json (the values that shape it)."""


def test_the_8b_adaptation_recipe_is_planned_from_the_base_models_config_alone(tmp_path, monkeypatch):
    """The shipped recipe, with only config.json where it expects Llama 3.1 8B: Meta's 8.03B parameters plus the
    16,384 new rows of input and output embeddings; the plan fits 80 GiB; the same recipe on a GPT-NeoX base says
    that activations are not planned for it and still gives the rest."""
    from typer.testing import CliRunner

    from fuxitranyu.cli import app
    from fuxitranyu.model.summary import recipe_model, summarize_module
    from fuxitranyu.pretrain.plan import GIB, recipe_plan
    from fuxitranyu.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FuxiError, match=r"models/Llama-3.1-8B/config.json is not a readable Hugging Face config"):
        load_recipe("adapt-llama-3.1-8b")
    base = tmp_path / "models" / "Llama-3.1-8B"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps(LLAMA_3_1_8B))
    recipe = load_recipe("adapt-llama-3.1-8b")
    base_parameters = summarize_module(recipe_model(recipe.model_copy(update={
        "tokenizer": recipe.tokenizer.model_copy(update={"mode": "reuse"})}))).parameters
    assert base_parameters == 8_030_261_248
    assert summarize_module(recipe_model(recipe)).parameters == base_parameters + 2 * 16_384 * 4096
    plan = recipe_plan(recipe)
    assert plan.memory.fits and plan.memory.largest_micro_batch >= recipe.pretrain.micro_batch_size
    assert plan.memory.training_state == 16 * 8_164_478_976 // 32 + 2 * 8_164_478_976
    assert 0.5 < plan.time.days < 2
    shown = CliRunner().invoke(app, ["model", "info", "--recipe", "adapt-llama-3.1-8b"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "8,164,478,976" in shown.output and "fits in 80 GiB" in shown.output
    shown = CliRunner().invoke(app, ["model", "info", str(base)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "LlamaForCausalLM" in shown.output and "8,030,261,248" in shown.output

    neox = tmp_path / "neox"
    neox.mkdir()
    (neox / "config.json").write_text(json.dumps({"model_type": "gpt_neox", "hidden_size": 4096,
                                                  "intermediate_size": 16384, "num_hidden_layers": 32,
                                                  "num_attention_heads": 32, "vocab_size": 50432,
                                                  "max_position_embeddings": 4096}))
    other = load_recipe("adapt-llama-3.1-8b", [f"model.init_from={neox}", f"tokenizer.base={neox}"])
    memory = recipe_plan(other).memory
    assert memory.activations is None and memory.fits is None and memory.training_state > 10 * GIB
    assert ("activations saved for backward", "not planned for GPTNeoXForCausalLM (the activation model knows the "
            "layers of fuxitranyu, llama, mistral, qwen2)") in memory.rows()


def test_a_truncated_base_model_is_refused_when_copied_not_when_trained(tmp_path):
    from fuxitranyu.model.stage import check_safetensors

    base = base_model_dir(tmp_path / "base")
    weights = base / "model.safetensors"
    check_safetensors(weights, weights)  # whole: accepted
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(FuxiError, match=r"base/model.safetensors: not a readable safetensors file \(.*not fully "
                                        r"covered\); download the model again"):
        check_safetensors(weights, weights)
