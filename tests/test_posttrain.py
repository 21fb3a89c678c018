"""SFT and DPO stages, their data (layouts, language filter, mixture, demo), the chat tokenizer, chat and generate.

A tiny model (2 layers, hidden 64) with a tokenizer trained here (ChatML + dummy slots up to 512) stands in for a
pretrained one; losses, masks and margins are checked against hand computations on that model.
"""

import contextlib
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import skip_unless
from datasets import Dataset

from fuxitranyu import pipeline
from fuxitranyu.errors import FuxiError, RecipeError
from fuxitranyu.posttrain.chat import ChatModel, Sampling, generate_records, load_chat_model, read_prompts
from fuxitranyu.posttrain.config import LanguageFilter
from fuxitranyu.posttrain.data import (
    ExampleLanguage,
    SetFile,
    SourceSet,
    mix,
    normalise,
    produced_text,
    take_indices,
    to_chat,
    to_preference,
)
from fuxitranyu.posttrain.demo import NATIVE_NAMES, build_demo
from fuxitranyu.posttrain.model import PAD, load_base_model, load_chat_tokenizer
from fuxitranyu.recipe import load_recipe

TEXTS = ["the quick brown fox jumps over the lazy dog", "le renard brun rapide saute par-dessus le chien",
         "der schnelle braune Fuchs springt über den faulen Hund", "translate into French please",
         "el rápido zorro marrón salta sobre el perro perezoso"]


def conversation(i):
    return {"messages": [{"role": "user", "content": f"Translate into French: the brown fox number {i}"},
                         {"role": "assistant", "content": f"le renard brun {i % 3}"}]}


def pair(i):
    return {"prompt": [{"role": "user", "content": f"Translate into German: the quick fox {i}"}],
            "chosen": [{"role": "assistant", "content": "der schnelle Fuchs"}],
            "rejected": [{"role": "assistant", "content": "the quick fox"}]}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def save_tiny_model(directory, vocab_size=400, vocab_multiple=128, seed=0):
    """A ChatML tokenizer (`vocab_size` learned + 2 chat tokens, dummies up to a multiple of `vocab_multiple`) and a
    random 2-layer model of that vocabulary, saved together as a model directory."""
    from fuxitranyu.model import FuxiTranyuForCausalLM, preset_config
    from fuxitranyu.tokenizer.layout import VocabularyLayout
    from fuxitranyu.tokenizer.train import save_pretrained, train_bpe

    layout = VocabularyLayout(vocab_size=vocab_size, chat_tokens=True, pad_to_multiple_of=vocab_multiple)
    tokenizer, _ = train_bpe(TEXTS * 20, layout)
    save_pretrained(tokenizer, directory, chat_tokens=True)
    torch.manual_seed(seed)
    config = preset_config("tiny", vocab_size=layout.size, hidden_size=64, intermediate_size=128,
                           num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=2,
                           max_position_embeddings=128)
    FuxiTranyuForCausalLM(config).save_pretrained(directory)
    return Path(directory)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("base"))


def tiny_recipe(run_dir, *overrides):
    return load_recipe("tiny", [f"output_dir={run_dir}", "sft.precision=fp32", "dpo.precision=fp32",
                                "sft.log_every_steps=1", "dpo.log_every_steps=1", *overrides])


# ----------------------------------------------------------------------------------------------------------------
# Chat template and tokenizer


def test_template_renders_round_trips_and_pad_takes_a_dummy_slot(base_dir):
    from transformers import AutoTokenizer

    chat = load_chat_tokenizer(base_dir)
    tok = chat.tokenizer
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "le renard"},
                {"role": "assistant", "content": "the fox"}]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    assert rendered == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nle renard<|im_end|>\n"
                        "<|im_start|>assistant\nthe fox<|im_end|>\n")
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert tok.decode(ids) == rendered and ids.count(400) == 3 and ids.count(401) == 3  # <|im_start|>, <|im_end|>
    prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    # <PAD> takes the first dummy after <|im_end|> (401): the vocabulary keeps its 512 ids
    original = AutoTokenizer.from_pretrained(base_dir).convert_ids_to_tokens(402)
    assert original.startswith("<|dummy_")
    assert (chat.pad.token, chat.pad.id, chat.pad.how, chat.pad.replaced) == (PAD, 402, "dummy", original)
    assert len(tok) == 512 and tok.pad_token_id == 402 and tok.convert_ids_to_tokens(402) == PAD
    assert tok(f"a{PAD}b", add_special_tokens=False)["input_ids"][1] == 402
    assert chat.stop_ids == [401, 0]  # <|im_end|>, then <|endoftext|>


def test_tokenizer_without_dummy_slot_gets_a_new_pad_and_the_model_grows(tmp_path):
    directory = save_tiny_model(tmp_path / "exact", vocab_size=300, vocab_multiple=1)  # 302 ids, all learned
    chat = load_chat_tokenizer(directory)
    assert not any(t.content.startswith("<|dummy") for t in chat.tokenizer.added_tokens_decoder.values())
    assert (chat.pad.how, chat.pad.id, len(chat.tokenizer)) == ("added", 302, 303)
    model = load_base_model(directory, chat, "sdpa")
    assert model.get_input_embeddings().num_embeddings == 384 and model.config.vocab_size == 384
    assert model.generation_config.pad_token_id == 302
    # The grown rows come from the seed alone, whatever the global RNG holds: the same run gives the same weights
    torch.manual_seed(123)
    again = load_base_model(directory, chat, "sdpa")
    other = load_base_model(directory, chat, "sdpa", seed=1)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        grown = model.state_dict()[name][302:]
        assert torch.equal(grown, again.state_dict()[name][302:])
        assert not torch.equal(grown, other.state_dict()[name][302:])


def test_tokenizer_without_chat_template_is_a_clear_error(tmp_path, base_dir):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(base_dir, plain)
    (plain / "chat_template.jinja").unlink()
    with pytest.raises(FuxiError, match="the tokenizer has no chat template") as info:
        load_chat_tokenizer(plain)
    assert str(plain) in str(info.value)


def test_assistant_only_mask_is_exactly_the_assistant_tokens_with_im_end(base_dir, tmp_path):
    """TRL's own preprocessing, read back from the trainer: the tokens that carry loss are each assistant answer
    and its <|im_end|>, nothing else (the answer ids computed here by tokenizing the answers alone)."""
    from trl import SFTConfig, SFTTrainer

    chat = load_chat_tokenizer(base_dir)
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the fox"},
             {"role": "assistant", "content": "le renard"}, {"role": "user", "content": "the dog"},
             {"role": "assistant", "content": "le chien rapide"}]
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, bf16=False, use_cpu=True,
                     activation_checkpointing=False, report_to="none", max_length=128)
    trainer = SFTTrainer(model=load_base_model(base_dir, chat, "sdpa"), args=args,
                         train_dataset=Dataset.from_list([{"messages": turns}]), processing_class=chat.tokenizer)
    row = trainer.train_dataset[0]
    assert len(row["labels"]) == len(row["input_ids"])
    masked = [token for token, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert all(label in (-100, token) for token, label in zip(row["input_ids"], row["labels"]))
    expected = []
    for answer in ("le renard", "le chien rapide"):
        expected += chat.tokenizer(answer, add_special_tokens=False)["input_ids"] + [401]
    assert masked == expected
    batch = trainer.data_collator([row])
    assert (batch["labels"][0] != -100).sum() == len(expected)


def test_packed_padding_free_batch_gives_the_padded_loss(base_dir):
    """`sft.packing`: TRL's padding-free collator puts the examples in one row and marks them by position ids; the
    model must attend within each example only, so the loss equals that of the padded batch."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    chat = load_chat_tokenizer(base_dir)
    model = load_base_model(base_dir, chat, "sdpa").eval()
    examples = [{"input_ids": chat.tokenizer.apply_chat_template(conversation(i)["messages"] * (1 + i % 3),
                                                                  tokenize=True, return_dict=True)["input_ids"]}
                for i in range(4)]
    assert len({len(e["input_ids"]) for e in examples}) > 1
    padded = DataCollatorForLanguageModeling(pad_token_id=chat.pad.id)(examples)
    packed = DataCollatorForLanguageModeling(pad_token_id=chat.pad.id, padding_free=True)(examples)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    with torch.no_grad():  # no cache, as TRL's training forward: transformers reads packing only without one
        loss_padded = model(**padded, use_cache=False).loss
        loss_packed = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                            labels=packed["labels"], use_cache=False).loss
    assert torch.allclose(loss_packed, loss_padded, atol=1e-5), (loss_packed, loss_padded)


# ----------------------------------------------------------------------------------------------------------------
# Data: layouts, errors, language filter, mixture, demo


@pytest.mark.parametrize("record, expected", [
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
     [("user", "hi"), ("assistant", "hello")]),
    ({"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "hi"},
                        {"from": "gpt", "value": "hello"}]},  # ShareGPT, OpenHermes 2.5
     [("system", "s"), ("user", "hi"), ("assistant", "hello")]),
    ({"instruction": "Add", "input": "1 and 2", "output": "3"}, [("user", "Add\n\n1 and 2"), ("assistant", "3")]),
    ({"inputs": "Qu'est-ce ?", "targets": "Rien."}, [("user", "Qu'est-ce ?"), ("assistant", "Rien.")]),  # Aya
    ({"query": "2+2?", "response": "4"}, [("user", "2+2?"), ("assistant", "4")]),  # dart-math
])
def test_chat_layouts(record, expected):
    assert [(t["role"], t["content"]) for t in to_chat(record)] == expected


def test_preference_layouts():
    user, good, bad = ({"role": r, "content": c} for r, c in (("user", "q"), ("assistant", "a"), ("assistant", "b")))
    plain = to_preference({"prompt": "q", "chosen": "a", "rejected": "b"})
    assert plain == {"prompt": [user], "chosen": [good], "rejected": [bad]}
    ultrafeedback = to_preference({"prompt": "q", "chosen": [user, good], "rejected": [user, bad], "score": 8})
    assert ultrafeedback == plain
    assert to_preference({"chosen": [user, good], "rejected": [user, bad]}) == plain


@pytest.mark.parametrize("kind, records, message, record", [
    ("sft", [conversation(0), {"messages": [{"role": "user", "content": "hi"}]}],
     "a conversation without an assistant turn", 2),
    ("sft", [{"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}],
     r"messages\[0\]: unknown role 'robot'; expected one of system, user, assistant", 1),
    ("sft", [{"text": "just text"}], "expected `messages`, `conversations`, or a prompt column", 1),
    ("dpo", [pair(0), pair(1), {**pair(2), "chosen": [{"role": "assistant", "content": "  "}]}],
     "empty `chosen`", 3),
    ("dpo", [{"prompt": "q", "chosen": "a"}], "a preference pair needs `chosen` and `rejected`", 1),
    ("dpo", [{"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
              "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "b"}]}],
     "differ before their last turn", 1),
])
def test_bad_records_name_file_and_record(tmp_path, base_dir, kind, records, message, record):
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    recipe = tiny_recipe(tmp_path / "run", f"{kind}.model={base_dir}", f"{kind}.data.demo=null",
                         f"{kind}.data.sets=[{{path: {path}}}]")
    with pytest.raises(FuxiError, match=message) as info:
        pipeline.run_pipeline(recipe, only=[kind])
    assert info.value.path == str(path) and info.value.record == record


@pytest.mark.parametrize("content, message, line", [
    (b'{"messages": []}\n\n{"messages": [}\n', "malformed JSON", 3),  # after a blank line: line 3, not row 2
    (json.dumps(conversation(0)).encode() + b'\n{"messages": [{"role": "user", "content": "caf\xe9"}]}\n',
     "invalid UTF-8 at byte", 2),
    (json.dumps(conversation(0)).encode() + b"\n\n" + json.dumps({"messages": [{"role": "user", "content": "x"}]})
     .encode() + b"\n", "a conversation without an assistant turn", 3),
    (b'[1, 2]\n', "expected a JSON object", "record 1"),
])
def test_a_chat_file_error_names_its_line(tmp_path, base_dir, content, message, line, capfd):
    path = tmp_path / "chat.jsonl"
    path.write_bytes(content)
    recipe = tiny_recipe(tmp_path / "run", f"sft.model={base_dir}", "sft.data.demo=null",
                         f"sft.data.sets=[{{path: {path}}}]")
    with pytest.raises(FuxiError, match=message) as info:
        pipeline.run_pipeline(recipe, only=["sft"])
    assert (info.value.path, info.value.record) == (str(path), line)
    assert "Failed to load JSON" not in capfd.readouterr().err


def test_unreadable_file_and_bad_recipe_values_are_clear_errors(tmp_path, base_dir):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": [}\n')
    recipe = tiny_recipe(tmp_path / "run", f"sft.model={base_dir}", "sft.data.demo=null",
                         f"sft.data.sets=[{{path: {broken}}}]")
    with pytest.raises(FuxiError, match="malformed JSON") as info:
        pipeline.run_pipeline(recipe, only=["sft"])
    assert (info.value.path, info.value.record) == (str(broken), 1)
    cases = {
        "sft.data.sets=[{path: a.jsonl, weight: -0.5}]":
            "key 'sft.data.sets.0.weight' (from --set sft.data.sets=[{path: a.jsonl, weight: -0.5}]): Input should "
            "be greater than or equal to 0",
        "sft.overrides={lr_scheduler_typ: linear}": "overrides.lr_scheduler_typ is not a field of TRL's SFTConfig; "
                                                    "did you mean lr_scheduler_type?",
        "sft.overrides={learning_rate: 1}": "overrides.learning_rate is set by the recipe: use max_lr instead",
        "dpo.overrides={output_dir: x}": "overrides.output_dir is set by the stage",
        "sft.global_batch_size=33": "global_batch_size 33 is not a multiple of micro_batch_size 4",
        "sft.language_filter.languages=[xx]": "unknown language code 'xx'",
        "sft.data.demo=null": "data: give `sets` or `demo`",
    }
    for override, expected in cases.items():
        with pytest.raises(RecipeError) as info:
            load_recipe("tiny", [override])
        assert expected in str(info.value), str(info.value)


def test_dpo_reference_with_another_vocabulary_is_refused(tmp_path, base_dir):
    other = save_tiny_model(tmp_path / "other", vocab_size=300, vocab_multiple=1)
    path = write_jsonl(tmp_path / "pairs.jsonl", [pair(i) for i in range(4)])
    recipe = tiny_recipe(tmp_path / "run", f"dpo.model={base_dir}", f"dpo.reference={other}", "dpo.data.demo=null",
                         f"dpo.data.sets=[{{path: {path}}}]", "dpo.max_length=128")
    with pytest.raises(FuxiError, match="the reference model's vocabulary differs from the policy's") as info:
        pipeline.run_pipeline(recipe, only=["dpo"])
    assert info.value.path == str(other)


LANGUAGE_SAMPLES = {  # sentence -> the language the filter must name
    "The committee will publish its annual report on the state of the rivers next week.": "en",
    "Le comité publiera la semaine prochaine son rapport annuel sur l'état des rivières.": "fr",
    "Der Ausschuss wird nächste Woche seinen Jahresbericht über den Zustand der Flüsse veröffentlichen.": "de",
    "委员会将于下周发布关于河流状况的年度报告。": "zh",
    "ستنشر اللجنة تقريرها السنوي عن حالة الأنهار الأسبوع المقبل.": "ar",
    "समिति अगले सप्ताह नदियों की स्थिति पर अपनी वार्षिक रिपोर्ट प्रकाशित करेगी।": "hi",
    "คณะกรรมการจะเผยแพร่รายงานประจำปีเกี่ยวกับสภาพแม่น้ำในสัปดาห์หน้า": "th",
    "Комитет опубликует свой ежегодный доклад о состоянии рек на следующей неделе.": "ru",
    # outside the 43
    "Kamati itachapisha ripoti yake ya mwaka kuhusu hali ya mito wiki ijayo.": "sw",
    "Nefndin mun birta ársskýrslu sína um ástand ánna í næstu viku.": "is",
    "Foilseoidh an coiste a thuarascáil bhliantúil ar staid na n-aibhneacha an tseachtain seo chugainn.": "ga",
    "La komitato publikigos sian jaran raporton pri la stato de la riveroj venontsemajne.": "eo",
}


def answered(text, instruction="Please write this sentence.", language_code=None, language=None):
    return {"messages": [{"role": "user", "content": instruction}, {"role": "assistant", "content": text}],
            "language_code": language_code, "language": language}


def test_language_filter_drops_exactly_the_out_of_list_examples():
    examples = [answered(text) for text in LANGUAGE_SAMPLES]
    language = ExampleLanguage(LanguageFilter())
    assert [language(text).language for text in LANGUAGE_SAMPLES] == list(LANGUAGE_SAMPLES.values())
    mixture = mix([SourceSet("s", "test", Dataset.from_list(examples))], LanguageFilter(), seed=0)
    report = mixture.stats()["sets"]["s"]
    assert report["kept_by_language"] == {c: 1 for c in ("ar", "de", "en", "fr", "hi", "ru", "th", "zh")}
    assert report["dropped_by_language"] == {"eo": 1, "ga": 1, "is": 1, "sw": 1}
    kept_texts = {ex["messages"][1]["content"] for ex in mixture.dataset}
    assert kept_texts == {t for t, lang in LANGUAGE_SAMPLES.items() if lang not in ("sw", "is", "ga", "eo")}
    dropped = report["dropped_examples"]
    assert [entry["example"] for entry in dropped] == [9, 10, 11, 12]
    assert all("neither is a kept language" in entry["reason"] for entry in dropped)
    assert "fastText eo 0.85, py3langid eo" in next(e["reason"] for e in dropped if e["text"].startswith("La komitato"))
    subset = mix([SourceSet("s", "test", Dataset.from_list(examples))], LanguageFilter(languages=["en", "zh"]), 0)
    assert subset.stats()["sets"]["s"]["kept_by_language"] == {"en": 1, "zh": 1}


def test_language_filter_judges_the_answer_and_believes_a_declared_language_it_cannot_contradict(tmp_path):
    """The instruction may mix languages; the answer is what the model learns to write. A record's declared
    language (a code; aliases resolved) settles a text too short to identify, and an unlisted one drops it."""
    records = [
        answered("SELinux is disabled on this system.", "ترجم إلى لغة English:\nSELinux bu sistemde devre dışı."),
        answered("Tafadhali hifadhi faili kabla ya kufunga programu hii.", "Translate into Swahili:\nPlease save "
                 "the file before closing this program."),  # unsure fastText, py3langid sw: dropped
        answered("SELinux", language_code="ary"),              # too short to tell; declared Moroccan Arabic
        answered("Le comité publiera son rapport annuel la semaine prochaine.", language_code="swh"),
        answered("Kamati itachapisha ripoti yake ya mwaka kuhusu hali ya mito wiki ijayo.", language="fr"),
        answered("Der Ausschuss veröffentlicht nächste Woche seinen Jahresbericht.", language="English"),
    ]
    part = SetFile(tmp_path / "set.jsonl", Dataset.from_list(records))
    normalised = normalise(part, False, tmp_path / "cache.arrow")
    assert normalised["language"] == ["", "", "ar", "swh", "fr", ""]  # "English" is a name, not a code
    report = mix([SourceSet("s", "test", normalised)], LanguageFilter(), seed=0).stats()["sets"]["s"]
    assert report["kept_by_language"] == {"en": 1, "ar": 1, "de": 1}
    assert report["dropped_by_language"] == {"sw": 2, "swh": 1}
    reasons = {entry["example"]: entry["reason"] for entry in report["dropped_examples"]}
    assert reasons[4] == "declares swh, not a kept language"
    assert "py3langid sw" in reasons[2] and "fastText" in reasons[5]  # confident sw contradicts the declared fr
    preference = to_preference({"prompt": "Traduis en allemand : the quick fox", "chosen": "der schnelle Fuchs",
                                "rejected": "the quick fox"})
    assert ExampleLanguage(LanguageFilter())(produced_text(preference)).language == "de"


def test_the_default_runs_demo_data_passes_the_language_filter(tmp_path):
    """All of the demo data is in supported languages: the filter keeps every example the default recipe builds
    (the 256 SFT examples and 64 DPO pairs from the held-out sets, measured when the system has their catalogs)."""
    from fuxitranyu.data import system

    recipe = load_recipe("tiny")
    source = recipe.data.sources[0]
    files = []
    for domain in ("sed", "grep"):
        rows = list(system.parallel_rows(source.locale_dir, [domain], languages=recipe.data.language_set))
        if rows:
            files.append(write_jsonl(tmp_path / f"{domain}.jsonl", rows))
    skip_unless(bool(files), "this machine has no sed or grep message catalogs")
    for key, preference in (("sft", False), ("dpo", True)):
        section = getattr(recipe, key)
        demo = section.data.demo
        built = build_demo(files, demo.examples, demo.prompt_languages, demo.max_chars, recipe.seed, preference)
        demo_set = SourceSet("demo", "demo", Dataset.from_list(built.records))
        report = mix([demo_set], section.language_filter, recipe.seed).stats()["sets"]["demo"]
        assert report["dropped"] == 0, report["dropped_examples"]
        assert report["kept"] == demo.examples


def test_mixture_weights_and_caps():
    rng = np.random.default_rng(0)
    half = take_indices(10, 0.5, None, rng)
    assert len(half) == 5 and len(set(half)) == 5
    twice = take_indices(10, 2.0, None, rng)
    assert sorted(twice) == sorted(list(range(10)) * 2)
    assert len(take_indices(10, 2.5, None, rng)) == 25 and len(take_indices(10, 1.0, 3, rng)) == 3
    assert len(take_indices(10, 0.0, None, rng)) == 0
    assert list(take_indices(10, 0.5, None, np.random.default_rng(7))) == \
        list(take_indices(10, 0.5, None, np.random.default_rng(7)))


@pytest.fixture(scope="module")
def parallel_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parallel")
    units = [{"id": f"u{i}", "texts": {"en": f"open file number {i}", "fr": f"ouvrir le fichier numéro {i}",
                                       "de": f"Datei Nummer {i} öffnen", "zz": "ignored"}} for i in range(20)]
    write_jsonl(folder / "set.jsonl", units)
    return folder


def test_demo_instructions_have_the_real_translation_as_answer(parallel_dir):
    units = [json.loads(line)["texts"] for line in (parallel_dir / "set.jsonl").read_text().splitlines()]
    demo = build_demo([parallel_dir / "set.jsonl"], 60, ["en", "zh", "fr"], 300, seed=1, preference=False)
    assert len(demo.records) == 60 and demo.stats["units"] == 20
    for record in demo.records:
        user, answer = record["messages"][0]["content"], record["messages"][1]["content"]
        unit = next(u for u in units if answer in u.values() and any(t in user for t in u.values() if t != answer))
        target = next(lang for lang, text in unit.items() if text == answer)
        assert NATIVE_NAMES[target] in user and target != "zz"
    languages = demo.stats["prompt_languages"]
    assert sum(languages.values()) == 60 and set(languages) == {"en", "zh", "fr"}
    def again(seed):
        return build_demo([parallel_dir / "set.jsonl"], 60, ["en", "zh", "fr"], 300, seed, False).records

    assert again(1) == demo.records and again(2) != demo.records


def test_demo_preference_pairs_reject_a_plausible_wrong_answer(parallel_dir):
    units = [json.loads(line)["texts"] for line in (parallel_dir / "set.jsonl").read_text().splitlines()]
    demo = build_demo([parallel_dir / "set.jsonl"], 80, ["en"], 300, seed=1, preference=True)
    kinds = demo.stats["rejected"]
    assert set(kinds) == {"wrong_language", "wrong_unit"} and sum(kinds.values()) == 80
    for record in demo.records:
        chosen, rejected = record["chosen"][0]["content"], record["rejected"][0]["content"]
        unit = next(u for u in units if chosen in u.values())
        target = next(lang for lang, text in unit.items() if text == chosen)
        other_language = rejected in unit.values()
        other_unit = any(u.get(target) == rejected for u in units if u is not unit)
        assert rejected != chosen and (other_language or other_unit)


# ----------------------------------------------------------------------------------------------------------------
# The stages


def assistant_nll(model_dir, records):
    """Mean negative log-likelihood of the assistant answers (with <|im_end|>) under a model, by hand."""
    from transformers import AutoModelForCausalLM

    chat = load_chat_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for record in records:
        out = chat.tokenizer.apply_chat_template(record["messages"], tokenize=True, return_dict=True,
                                                 return_assistant_tokens_mask=True)
        ids, mask = torch.tensor([out["input_ids"]]), torch.tensor(out["assistant_masks"])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        picked = logp.gather(1, ids[0, 1:, None])[:, 0]
        total -= picked[mask[1:].bool()].sum().item()
        count += int(mask[1:].sum())
    return total / count


def completion_logp(model, tokenizer, prompt, answer):
    prefix = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)
    full = tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]
    start = len(prefix["input_ids"])
    ids = torch.tensor([full])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    return logp.gather(1, ids[0, 1:, None])[start - 1:, 0].sum().item()


def preference_margin(model_dir, records):
    """Mean of log p(chosen) − log p(rejected) over the pairs, by hand."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_chat_tokenizer(model_dir).tokenizer
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return float(np.mean([completion_logp(model, tokenizer, r["prompt"], r["chosen"])
                          - completion_logp(model, tokenizer, r["prompt"], r["rejected"]) for r in records]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_dir):
    """SFT then DPO through the pipeline, each on a real-layout JSONL set, as `fuxitranyu run` does."""
    root = tmp_path_factory.mktemp("trained")
    chat_records = [conversation(i) for i in range(24)]
    pairs = [pair(i) for i in range(16)]
    recipe = tiny_recipe(
        root / "run", f"sft.model={base_dir}", "sft.data.demo=null",
        f"sft.data.sets=[{{path: {write_jsonl(root / 'chat.jsonl', chat_records)}}}]", "sft.max_length=128",
        "sft.packing=false",  # batches of conversations, so that the steps are known (packing: its own test)
        "sft.max_lr=3e-3", "sft.epochs=4", "sft.global_batch_size=8", "sft.micro_batch_size=4",
        "dpo.data.demo=null", f"dpo.data.sets=[{{path: {write_jsonl(root / 'pairs.jsonl', pairs)}}}]",
        "dpo.max_length=128", "dpo.max_lr=1e-3", "dpo.epochs=2", "dpo.global_batch_size=8", "dpo.micro_batch_size=4")
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        manifests = pipeline.run_pipeline(recipe, only=["sft", "dpo"])
    return {"recipe": recipe, "run": root / "run", "chat": chat_records, "pairs": pairs, "manifests": manifests,
            "stdout": stdout.getvalue()}


def test_sft_lowers_the_assistant_loss_on_its_training_set(trained, base_dir):
    before, after = assistant_nll(base_dir, trained["chat"]), assistant_nll(trained["run"] / "sft" / "model",
                                                                            trained["chat"])
    assert after < before - 1.0, (before, after)  # nats per assistant token
    stats = trained["manifests"][0]["stats"]
    assert stats["steps"] == 12 and stats["examples"] == 24 and stats["languages"] == {"fr": 24}  # the answers
    assert stats["pad_token"]["how"] == "dummy" and stats["precision"]["precision"] == "fp32"
    logged = [json.loads(line) for line in (trained["run"] / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged if "loss" in entry] == list(range(1, 13))
    assert "loss" not in trained["stdout"]  # the logs go to metrics.jsonl, not as dicts onto the run's stdout


def test_sft_model_directory_serves_on_its_own(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model_dir = trained["run"] / "sft" / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.pad_token == PAD and tokenizer.pad_token_id == 402 and len(tokenizer) == 512
    assert json.loads((model_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert GenerationConfig.from_pretrained(model_dir).eos_token_id == [401, 0]
    assert AutoModelForCausalLM.from_pretrained(model_dir).config.vocab_size == 512
    assert sorted(p.name for p in (trained["run"] / "sft").iterdir()) == [
        "data_stats.json", "decisions.json", "manifest.json", "metrics.jsonl", "mix.md", "model"]


def test_dpo_raises_the_chosen_minus_rejected_margin(trained):
    before = preference_margin(trained["run"] / "sft" / "model", trained["pairs"])
    after = preference_margin(trained["run"] / "dpo" / "model", trained["pairs"])
    assert after > before + 1.0, (before, after)
    stats = trained["manifests"][1]["stats"]
    assert stats["base_model"] == str(trained["run"] / "sft" / "model") and stats["steps"] == 4
    assert stats["last_log"]["rewards/margins"] > 0


def test_dpo_rewards_scale_with_the_recipe_beta(tmp_path, base_dir):
    """DPO's implicit reward is beta × (log π − log π_ref). Adam's first update is the same whatever the loss's scale
    (m/√v = sign of the gradient), so after one step the two runs hold the same policy and the rewards logged at step
    2 differ by the ratio of the betas: the recipe's beta (not TRL's default 0.1) reaches the loss."""
    data = write_jsonl(tmp_path / "pairs.jsonl", [pair(i) for i in range(8)])
    logged = {}
    for beta in (0.5, 0.05):
        recipe = tiny_recipe(tmp_path / f"beta-{beta}", f"dpo.model={base_dir}", "dpo.data.demo=null",
                             f"dpo.data.sets=[{{path: {data}}}]", "dpo.max_length=128", "dpo.global_batch_size=4",
                             "dpo.micro_batch_size=4", "dpo.epochs=1", "dpo.max_lr=1e-3", "dpo.warmup_ratio=0",
                             f"dpo.beta={beta}")
        pipeline.run_pipeline(recipe, only=["dpo"])
        rows = [json.loads(line) for line in (tmp_path / f"beta-{beta}" / "dpo" / "metrics.jsonl").read_text()
                .splitlines()]
        logged[beta] = next(row for row in rows if row["step"] == 2 and "rewards/chosen" in row)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert abs(logged[0.5][key]) > 1e-3
        assert logged[0.5][key] / logged[0.05][key] == pytest.approx(10, rel=0.02), key


def test_rerun_with_the_same_inputs_is_skipped(trained):
    recipe = trained["recipe"]
    mtime = (trained["run"] / "sft" / "model" / "model.safetensors").stat().st_mtime_ns
    assert [p.action for p in pipeline.plan_stages(recipe, only=["sft", "dpo"])] == ["skip", "skip"]
    pipeline.run_pipeline(recipe, only=["sft", "dpo"])
    assert (trained["run"] / "sft" / "model" / "model.safetensors").stat().st_mtime_ns == mtime
    changed = recipe.model_copy(update={"dpo": recipe.dpo.model_copy(update={"beta": 0.2})})
    assert [p.action for p in pipeline.plan_stages(changed, only=["sft", "dpo"])] == ["skip", "run"]
    logging_only = recipe.model_copy(update={"sft": recipe.sft.model_copy(update={"log_every_steps": 5})})
    assert [p.action for p in pipeline.plan_stages(logging_only, only=["sft"])] == ["skip"]


def test_interrupted_stage_resumes_from_its_last_checkpoint(tmp_path, base_dir, monkeypatch):
    from fuxitranyu.posttrain import train

    path = write_jsonl(tmp_path / "chat.jsonl", [conversation(i) for i in range(16)])
    recipe = tiny_recipe(tmp_path / "run", f"sft.model={base_dir}", "sft.data.demo=null",
                         f"sft.data.sets=[{{path: {path}}}]", "sft.max_length=128", "sft.packing=false",
                         "sft.global_batch_size=4", "sft.micro_batch_size=4", "sft.epochs=1", "sft.save_every_steps=2")

    class Interrupted(train.MetricsWriter):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(train, "MetricsWriter", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_pipeline(recipe, only=["sft"])
    monkeypatch.undo()
    stats = pipeline.run_pipeline(recipe, only=["sft"])[0]["stats"]
    assert stats["resumed_from_step"] == 2 and stats["steps"] == 4
    logged = [json.loads(line) for line in (tmp_path / "run" / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged if "loss" in entry] == [1, 2, 3, 4]


KILL_9 = """
import json, os, signal, sys
import transformers
from fuxitranyu import pipeline
from fuxitranyu.recipe import load_recipe

point, step, stage, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
Trainer = transformers.Trainer

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "step":  # in the middle of step `step`: its backward done, its update not
    train_step = Trainer.training_step
    def training_step(self, *args, **kwargs):
        out = train_step(self, *args, **kwargs)
        if self.state.global_step == step - 1:
            die()
        return out
    Trainer.training_step = training_step
elif point == "save":  # while saving checkpoint `step`: its weights written, optimizer and trainer state not
    save = Trainer._save_optimizer_and_scheduler
    def save_optimizer(self, output_dir):
        if self.state.global_step == step:
            die()
        return save(self, output_dir)
    Trainer._save_optimizer_and_scheduler = save_optimizer
elif point == "end":  # after the last step and its checkpoint, before the stage writes its model
    save_model = Trainer.save_model
    def final_save(self, output_dir=None, _internal_call=False):
        if not _internal_call:
            die()
        return save_model(self, output_dir, _internal_call)
    Trainer.save_model = final_save
pipeline.run_pipeline(load_recipe("tiny", overrides), only=[stage])
"""

TIMINGS = {"train_runtime", "train_samples_per_second", "train_steps_per_second"}


def comparable_metrics(stage_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
            for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_kill_9_at_three_points_resumes_to_the_uninterrupted_run(tmp_path, base_dir, stage):
    """One run of 8 steps, checkpoints every 2, SIGKILLed three times: in the middle of step 3 (a torn metrics line
    added), while saving checkpoint 6 (set aside, 4 used), and after the last step (nothing left to train). The
    resumed run ends with the uninterrupted run's weights, metrics, loss and token counts."""
    from safetensors.torch import load_file

    records = [conversation(i) for i in range(16)] if stage == "sft" else [pair(i) for i in range(16)]
    data = write_jsonl(tmp_path / "data.jsonl", records)
    overrides = [f"{stage}.{key}" for key in (
        f"model={base_dir}", "data.demo=null", f"data.sets=[{{path: {data}}}]", "max_length=128", "packing=false",
        "global_batch_size=4", "micro_batch_size=2", "epochs=2", "max_lr=1e-3", "save_every_steps=2",
        "log_every_steps=1", "precision=fp32") if not (stage == "dpo" and key == "packing=false")]
    reference = pipeline.run_pipeline(tiny_recipe(tmp_path / "reference", *overrides), only=[stage])[0]["stats"]
    run = tmp_path / "run"
    recipe = tiny_recipe(run, *overrides)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for point, step in (("step", 3), ("save", 6), ("end", 8)):
        killed = subprocess.run([sys.executable, "-c", KILL_9, point, str(step), stage,
                                 json.dumps([f"output_dir={run}", *recipe_overrides(recipe)])],
                                capture_output=True, text=True, env=env, timeout=300)
        assert killed.returncode == -9, killed.stderr[-3000:]
        (partial,) = run.glob(f".{stage}.partial-*")
        if point == "step":
            with (partial / "metrics.jsonl").open("a") as metrics:
                metrics.write('{"step": 3, "loss": 1.2')
    assert sorted(p.name for p in (partial / "checkpoints" / "corrupt").iterdir()) == ["checkpoint-6"]
    stats = pipeline.run_pipeline(recipe, only=[stage])[0]["stats"]
    assert stats["resumed_from_step"] == 8 and stats["steps"] == reference["steps"] == 8
    assert stats["train_loss"] == reference["train_loss"] and stats["num_tokens"] == reference["num_tokens"] > 0
    assert comparable_metrics(run / stage) == comparable_metrics(tmp_path / "reference" / stage)
    ours = load_file(run / stage / "model" / "model.safetensors")
    theirs = load_file(tmp_path / "reference" / stage / "model" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not list((run / stage).rglob("*.tmp"))


def recipe_overrides(recipe) -> list[str]:
    """The overrides that rebuild `recipe` from the embedded tiny one, for a subprocess."""
    return [f"{section}={json.dumps(getattr(recipe, section).model_dump(mode='json'))}" for section in ("sft", "dpo")]


def test_stages_read_their_base_model_from_the_stage_before():
    recipe = load_recipe("tiny")
    assert pipeline.stage_named("sft").needs_for(recipe) == ("data", "pretrain")
    assert pipeline.stage_named("dpo").needs_for(recipe) == ("data", "sft")
    named = load_recipe("tiny", ["sft.model=/m", "sft.data.demo=null", "sft.data.sets=[{path: x.jsonl}]"])
    assert pipeline.stage_named("sft").needs_for(named) == ()
    off = load_recipe("tiny", ["sft=null", "dpo=null", "evaluate=null", "analyze=null", "report=null"])
    assert [s.name for s in pipeline.STAGES if s.enabled_in(off)] == ["data", "tokenizer", "model", "mix", "pretrain"]


def test_8b_recipe_carries_the_papers_post_training_settings(tmp_path):
    from fuxitranyu.posttrain.train import trl_arguments, trl_config
    from fuxitranyu.runtime import Precision, World

    recipe = load_recipe("fuxitranyu-8b")
    sft, dpo = recipe.sft, recipe.dpo
    assert (sft.max_lr, sft.warmup_ratio, sft.global_batch_size, sft.epochs, sft.max_length) == (
        2e-5, 0.1, 320, 2, 4096)
    assert sft.neftune_alpha is not None and sft.activation_checkpointing and sft.reshard_after_forward is False
    assert (dpo.beta, dpo.max_lr, dpo.warmup_ratio, dpo.epochs, dpo.global_batch_size, dpo.max_length) == (
        0.01, 5e-7, 0.1, 1, 320, 4096)
    assert dpo.reshard_after_forward is True and dpo.model is None and dpo.reference is None
    assert sft.attention == dpo.attention == "flash_attention_2"
    world = World(rank=0, world_size=5, local_rank=0)  # the paper's 5 GPUs
    args = trl_arguments(sft, "sft", 1234, tmp_path, Precision("fp32", "test"), world, cpu=False)
    assert args["gradient_accumulation_steps"] * args["per_device_train_batch_size"] * 5 == 320
    assert args["fsdp_config"] == {"version": 2, "reshard_after_forward": False, "activation_checkpointing": True}
    with pytest.raises(FuxiError, match="accelerate runs FSDP only on GPUs"):
        trl_arguments(sft, "sft", 1234, tmp_path, Precision("fp32", "test"), world, cpu=True)
    cpu_ddp = sft.model_copy(update={"distributed": "auto"})
    assert "fsdp" not in trl_arguments(cpu_ddp, "sft", 1234, tmp_path, Precision("fp32", "t"), world, cpu=True)
    config = trl_config(dpo, trl_arguments(dpo, "dpo", 1234, tmp_path, Precision("fp32", "test"),
                                           World(), cpu=False), "dpo")
    assert (config.beta, config.learning_rate, config.num_train_epochs, config.lr_scheduler_type) == (
        0.01, 5e-7, 1.0, "cosine_with_min_lr")
    assert config.fsdp_config["reshard_after_forward"] is True and config.fsdp_config["activation_checkpointing"]
    assert config.activation_checkpointing is False  # FSDP's own checkpointing instead of the Trainer's


# ----------------------------------------------------------------------------------------------------------------
# chat and generate


def greedy_reply(chat: ChatModel, history, max_new_tokens):
    """transformers' generate on the unpadded prompt: the reference our streaming and batching must match."""
    ids = torch.tensor([chat.encode(history)])
    with torch.no_grad():
        out = chat.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=chat.stop_ids,
                                  pad_token_id=chat.tokenizer.pad_token_id)
    return chat.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def chat_model(trained):
    return load_chat_model(trained["run"] / "sft" / "model", "fp32")


def chat_command(model_dir):
    return [sys.executable, "-m", "fuxitranyu", "chat", str(model_dir), "--temperature", "0",
            "--max-new-tokens", "8", "--precision", "fp32"]


def test_chat_with_piped_input_keeps_the_conversation(trained, chat_model, monkeypatch, capsys):
    """The command in-process with a pipe-like stdin (no terminal): paragraphs are messages, only the replies are
    printed."""
    import io

    from fuxitranyu.cli import main

    prompts = []
    generate = ChatModel.generate

    def recording(self, batch, sampling, streamer=None):
        prompts.append(batch[0])
        return generate(self, batch, sampling, streamer)

    monkeypatch.setattr(ChatModel, "generate", recording)
    monkeypatch.setattr(sys, "stdin", io.StringIO("the brown fox\n\nnumber two\n\n/reset\n\nthe brown fox\n"))
    with pytest.raises(SystemExit) as info:
        main(chat_command(trained["run"] / "sft" / "model")[3:])
    assert info.value.code == 0
    first_turn = [{"role": "user", "content": "the brown fox"}]
    first = greedy_reply(chat_model, first_turn, 8)
    second_turn = first_turn + [{"role": "assistant", "content": first}, {"role": "user", "content": "number two"}]
    second = greedy_reply(chat_model, second_turn, 8)
    captured = capsys.readouterr()
    assert first and second and captured.out == f"{first}\n{second}\n{first}\n"
    assert prompts == [chat_model.encode(first_turn), chat_model.encode(second_turn), chat_model.encode(first_turn)]
    assert "(conversation reset)" in captured.err


def test_chat_pipes_messages_of_several_lines_and_fits_replies_into_the_context(trained, chat_model, monkeypatch,
                                                                               capsys):
    """The docs' example shape: a message of two lines from a pipe is one message. With the default budget (256)
    on a model of 128 positions, replies are cut where the context ends and that is said once; a message that does
    not fit is reported and the conversation goes on."""
    import io

    from fuxitranyu.cli import main

    budgets, prompts = [], []
    generate = ChatModel.generate

    def recording(self, batch, sampling, streamer=None):
        budgets.append(sampling.max_new_tokens)
        prompts.append(batch[0])
        return generate(self, batch, sampling, streamer)

    monkeypatch.setattr(ChatModel, "generate", recording)
    too_long = " ".join(["fox"] * 400)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"Translate into French:\nthe brown fox\n\n{too_long}\n\nthe fox\n"))
    model_dir = trained["run"] / "sft" / "model"
    with pytest.raises(SystemExit) as info:
        main(["chat", str(model_dir), "--temperature", "0", "--precision", "fp32"])
    assert info.value.code == 0 and chat_model.max_positions == 128
    first = [{"role": "user", "content": "Translate into French:\nthe brown fox"}]
    assert prompts[0] == chat_model.encode(first) and len(prompts) == 2
    assert budgets[0] == 128 - len(prompts[0]) and budgets[1] == 128 - len(prompts[1])
    err = capsys.readouterr().err
    assert err.count("replies are cut at the 128 positions") == 1 and "does not fit" in err


def read_until(fd, marker, timeout=300):
    seen, deadline = b"", time.time() + timeout
    while marker not in seen and time.time() < deadline:
        if select.select([fd], [], [], 1)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen.decode("utf-8", "replace")


def test_chat_under_a_terminal_prompts_and_streams(trained, chat_model):
    model_dir = trained["run"] / "sft" / "model"
    leader, follower = pty.openpty()
    process = subprocess.Popen(chat_command(model_dir), stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    try:
        banner = read_until(leader, b"> ")
        assert "/reset forgets the conversation" in banner
        os.write(leader, b"the brown fox\n")
        screen = read_until(leader, b"\n> ")
        os.write(leader, b'"""\nthe brown\nfox\n"""\n')  # a message of two lines
        several = read_until(leader, b"\n> ")
        os.write(leader, b"/exit\n")
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        os.close(leader)
    expected = greedy_reply(chat_model, [{"role": "user", "content": "the brown fox"}], 8)
    assert screen.replace("\r\n", "\n") == f"the brown fox\n{expected}\n> "  # the terminal echoes the input
    history = [{"role": "user", "content": "the brown fox"}, {"role": "assistant", "content": expected},
               {"role": "user", "content": "the brown\nfox"}]
    reply = greedy_reply(chat_model, history, 8)  # the input was typed at once: echoed before the ". " prompts
    assert several.replace("\r\n", "\n").endswith(f". . . {reply}\n> ")


def test_generate_batches_equal_one_prompt_at_a_time(trained, chat_model, tmp_path):
    prompts = [{"id": "a", "prompt": "the brown fox"}, {"prompt": "Translate into French: the brown fox number 7"},
               {"id": "c", "messages": [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "fox"}]}]
    path = write_jsonl(tmp_path / "prompts.jsonl", prompts)
    records = generate_records(chat_model, read_prompts(path), Sampling(max_new_tokens=10, temperature=0), 2)
    assert [r["id"] for r in records] == ["a", "2", "c"]
    for prompt, record in zip(read_prompts(path), records):
        assert record["response"] == greedy_reply(chat_model, prompt.messages, 10)
        assert record["finish_reason"] in ("stop", "length") and 0 < record["new_tokens"] <= 10
    from fuxitranyu.cli import main

    with pytest.raises(SystemExit) as info:
        main(["generate", str(trained["run"] / "sft" / "model"), "--prompts", str(path), "--output",
              str(tmp_path / "out.jsonl"), "--max-new-tokens", "10", "--precision", "fp32", "--batch-size", "3"])
    assert info.value.code == 0
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["response"] for r in written] == [r["response"] for r in records]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok"}, {"text": "no prompt"}])
    with pytest.raises(FuxiError, match='expected {"prompt": "..."}') as info:
        read_prompts(bad)
    assert info.value.record == 2


@pytest.mark.parametrize("command", ["sft", "dpo", "chat", "generate"])
def test_commands_have_help(command, capsys):
    from fuxitranyu.cli import main

    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0 and "Usage: fuxitranyu" in capsys.readouterr().out


def test_parallel_sets_are_chosen_by_name(tmp_path, parallel_dir):
    from fuxitranyu.data.parallel import parallel_sets
    from fuxitranyu.errors import FuxiError

    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "b.jsonl").write_text("{}\n")
    assert [p.name for p in parallel_sets(tmp_path, [])] == ["a.jsonl", "b.jsonl"]
    assert [p.name for p in parallel_sets(tmp_path, ["b"])] == ["b.jsonl"]
    with pytest.raises(FuxiError, match="no parallel set named c; the data stage wrote: a, b"):
        parallel_sets(tmp_path, ["c"])
    with pytest.raises(FuxiError, match="wrote no held-out parallel sets"):
        parallel_sets(tmp_path / "empty", [])
