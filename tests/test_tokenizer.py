import gzip
import json

import pytest
from tokenizers import Tokenizer

from fuxitranyu.cli import main
from fuxitranyu.data.parallel import ParallelSet, read_parallel
from fuxitranyu.errors import FuxiError, RecipeError
from fuxitranyu.languages import CODES
from fuxitranyu.recipe import TokenizerSection, load_recipe
from fuxitranyu.tokenizer import (
    CHAT_TOKENS,
    ENDOFTEXT,
    VocabularyLayout,
    load_named_tokenizer,
    measure,
    plan_sample,
    sample_sizes,
    train_bpe,
    train_tokenizer,
    write_table,
)
from fuxitranyu.tokenizer.fertility import markdown, plot, summarize_fertility
from fuxitranyu.tokenizer.train import pre_tokenizer, save_pretrained

# One sentence in every language of Table 2, in its own script (Vietnamese, Turkish, Romanian... with diacritics;
# Persian with a zero-width non-joiner).
SENTENCES = {
    "ar": "اللغة العربية جميلة، وأنا أتعلمها كل يوم.",
    "bg": "Българският език използва кирилица от векове.",
    "bn": "আমি বাংলায় গান গাইতে ভালোবাসি।",
    "ca": "El català es parla a Catalunya, València i les Illes Balears.",
    "cs": "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "de": "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
    "el": "Η ελληνική γλώσσα έχει μακρά ιστορία και πλούσια γραμματεία.",
    "en": "The quick brown fox jumps over the lazy dog.",
    "es": "El pingüino Wenceslao hizo kilómetros bajo exhaustiva lluvia y frío.",
    "fa": "زبان فارسی در ایران و تاجیکستان صحبت می\u200cشود.",
    "fi": "Hyvää huomenta, mitä kuuluu tänään?",
    "fr": "Portez ce vieux whisky au juge blond qui fume à côté de l'œuvre.",
    "he": "השפה העברית נכתבת מימין לשמאל.",
    "hi": "हिन्दी भारत की सबसे अधिक बोली जाने वाली भाषा है।",
    "hu": "Árvíztűrő tükörfúrógép a műhelyben.",
    "id": "Bahasa Indonesia adalah bahasa resmi Republik Indonesia.",
    "it": "Quel vituperabile xenofobo zelante assaggia il whisky ed esclama: alleluja!",
    "ja": "日本語の文章には、ひらがなとカタカナと漢字が混ざっています。",
    "kk": "Қазақ тілі түркі тілдерінің бірі болып табылады.",
    "km": "ភាសាខ្មែរគឺជាភាសាផ្លូវការរបស់ប្រទេសកម្ពុជា។",
    "ko": "한국어는 한글이라는 고유한 문자로 씁니다.",
    "ku": "Zimanê kurdî bi tîpên latînî tê nivîsandin.",
    "ky": "Кыргыз тили түрк тилдеринин бири.",
    "lo": "ພາສາລາວເປັນພາສາທາງການຂອງປະເທດລາວ.",
    "ms": "Bahasa Melayu ialah bahasa kebangsaan Malaysia.",
    "my": "မြန်မာဘာသာစကားသည် မြန်မာနိုင်ငံ၏ ရုံးသုံးဘာသာစကား ဖြစ်သည်။",
    "nl": "Het Nederlands wordt gesproken in Nederland en België.",
    "pl": "Zażółć gęślą jaźń, pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "pt": "À noite, vovô Kowalsky vê o ímã cair no pé do pinguim queixoso.",
    "ro": "Limba română folosește diacriticele ș și ț.",
    "ru": "Съешь же ещё этих мягких французских булок да выпей чаю.",
    "sv": "Flygande bäckasiner söka hwila på mjuka tuvor.",
    "ta": "தமிழ் மொழி உலகின் பழமையான மொழிகளில் ஒன்று.",
    "tg": "Забони тоҷикӣ забони давлатии Тоҷикистон аст.",
    "th": "ภาษาไทยเป็นภาษาราชการของประเทศไทย",
    "tk": "Türkmen dili Türkmenistanyň döwlet dilidir.",
    "tl": "Ang wikang Filipino ay pambansang wika ng Pilipinas.",
    "tr": "Pijamalı hasta yağız şoföre çabucak güvendi.",
    "uk": "Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!",
    "ur": "اردو پاکستان کی قومی زبان ہے۔",
    "uz": "Oʻzbek tili — Oʻzbekistonning davlat tili.",
    "vi": "Tiếng Việt có sáu thanh điệu và dùng chữ Quốc ngữ.",
    "zh": "汉语是世界上使用人数最多的语言之一。",
}
CODE = {
    "code-python": "def mean(xs: list[float]) -> float:\n\treturn sum(xs) / len(xs)  # 12345\n",
    "code-c": "#include <stdio.h>\nint main(void) {\n    printf(\"%d\\n\", 12345);\n    return 0;\n}\n",
}
TRICKY = [
    "", " ", "  leading and trailing  ", "tabs\tand\r\nnewlines\n\n", "emoji 👩‍💻🇫🇷 and ZWJ",
    "Vie\u0323\u0302t (NFD) vs Việt (NFC)", "<|endoftext|> inside text", "\x00\x01 control bytes \u00ad",
]


def write_jsonl_gz(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def documents(lang, text, n):
    """`n` documents of one language: its sentence with numbers, so that BPE learns whole numbers."""
    return [{"text": f"{text} 12345 {text} 2024 {i}", "id": f"{lang}/{i}", "metadata": {"language": lang}}
            for i in range(n)]


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    """The data stage's layout: clean/<label>/00000.jsonl.gz; English is large, Lao small."""
    root = tmp_path_factory.mktemp("data") / "clean"
    for lang, text in {**SENTENCES, **CODE}.items():
        n = {"en": 40, "lo": 2}.get(lang, 6)
        write_jsonl_gz(root / lang / "00000.jsonl.gz", documents(lang, text, n))
    return root


@pytest.fixture(scope="module")
def trained(clean_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer")
    config = TokenizerSection(vocab_size=1000, max_documents_per_language=5)
    stats = train_tokenizer(config, [clean_dir], out, seed=7)
    return out, stats


@pytest.fixture(scope="module")
def trained_marks(clean_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer-marks")
    config = TokenizerSection(vocab_size=1000, max_documents_per_language=5, marks_with_letters=True)
    train_tokenizer(config, [clean_dir], out, seed=7)
    return out


def test_vocabulary_layout_is_the_released_one():
    assert VocabularyLayout(250_680, True, 128).size == 250_752  # paper: 250,680 + 72 dummy tokens
    assert VocabularyLayout(8064, True, 128).size == 8192  # the tiny recipe
    assert VocabularyLayout(8064, False, 128).size == 8064
    with pytest.raises(FuxiError, match="smaller than the byte alphabet"):
        VocabularyLayout(256, True, 128)
    with pytest.raises(RecipeError, match=r"tokenizer.vocab_size.*\(256\) \+ <\|endoftext\|> = 257"):
        load_recipe("tiny", ["tokenizer.vocab_size=200"])


def test_special_token_ids_and_padding(trained):
    out, stats = trained
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == 1024 and tokenizer.get_vocab_size() % 128 == 0
    assert tokenizer.token_to_id(ENDOFTEXT) == 0
    assert [tokenizer.token_to_id(t) for t in CHAT_TOKENS] == [1000, 1001]
    assert tokenizer.id_to_token(1002) == "<|dummy_0|>" and tokenizer.id_to_token(1023) == "<|dummy_21|>"
    assert stats["vocabulary"] == {"learned": 1000, "size": 1024, "dummy_tokens": 22,
                                   "special_tokens": {ENDOFTEXT: 0, "<|im_start|>": 1000, "<|im_end|>": 1001}}


def test_small_corpus_fills_the_shortfall_so_chat_ids_stay(clean_dir, tmp_path):
    config = TokenizerSection(vocab_size=5000, max_documents_per_language=2)
    stats = train_tokenizer(config, [clean_dir], tmp_path, seed=1)
    tokenizer = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    learned = stats["vocabulary"]["learned"]
    assert learned < 5000 and tokenizer.get_vocab_size() == 5120
    assert [tokenizer.token_to_id(t) for t in CHAT_TOKENS] == [5000, 5001]
    assert tokenizer.id_to_token(learned) == "<|dummy_0|>" and stats["vocabulary"]["dummy_tokens"] == 5120 - learned - 2


@pytest.mark.parametrize("text", [*SENTENCES.values(), *CODE.values(), *TRICKY])
def test_round_trip_is_lossless(trained, trained_marks, text):
    for directory in (trained[0], trained_marks):
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        assert tokenizer.decode(tokenizer.encode(text).ids, skip_special_tokens=False) == text


def test_marks_with_letters_keeps_words_whole():
    text = "हिन्दी தமிழ் it's 42!"
    gpt2 = [piece for piece, _ in pre_tokenizer().pre_tokenize_str(text)]
    marks = [piece for piece, _ in pre_tokenizer(marks_with_letters=True).pre_tokenize_str(text)]
    assert len(gpt2) == 14 and len(marks) == 6  # GPT-2's regex cuts at every vowel sign and virama
    assert gpt2[-4:] == marks[-4:] == ["Ġit", "'s", "Ġ42", "!"]  # elsewhere the two regexes agree
    hindi, layout = [SENTENCES["hi"]] * 20, VocabularyLayout(600, False, 1)
    tokens = [len(train_bpe(hindi, layout, marks_with_letters=m)[0].encode("हिन्दी").ids) for m in (False, True)]
    assert tokens == [6, 1]  # one token per letter or mark, however often the word is seen; or the word


def test_every_language_has_a_sentence():
    assert sorted(SENTENCES) == sorted(CODES)


def test_numbers_are_not_split_into_digits(trained):
    pieces = [piece for piece, _ in pre_tokenizer().pre_tokenize_str("v 12345, 3.14")]
    assert pieces == ["v", "Ġ12345", ",", "Ġ3", ".", "14"]
    tokenizer = Tokenizer.from_file(str(trained[0] / "tokenizer.json"))
    assert tokenizer.encode(" 12345").tokens == ["Ġ12345"]  # seen often enough to become one token
    split = [piece for piece, _ in pre_tokenizer(split_digits=True).pre_tokenize_str("v 123")]
    assert split == ["v", "Ġ", "1", "2", "3"]


def test_auto_tokenizer_loads_with_chatml(trained):
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(trained[0])
    assert auto.is_fast and auto.bos_token_id == auto.eos_token_id == 0 and len(auto) == 1024
    text = SENTENCES["hi"] + " " + SENTENCES["zh"]
    assert auto.decode(auto(text)["input_ids"]) == text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"}]
    assert auto.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n")
    assert auto.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True).endswith(
        "<|im_end|>\n<|im_start|>assistant\n")
    rendered = auto.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    trained_on = [i for i, m in zip(rendered["input_ids"], rendered["assistant_masks"]) if m]
    assert auto.decode(trained_on) == "Hello<|im_end|>"  # the answer and its stop token, nothing else


def test_base_tokenizer_without_chat_tokens(tmp_path):
    from transformers import AutoTokenizer

    tokenizer, _ = train_bpe(SENTENCES.values(), VocabularyLayout(300, False, 128))
    save_pretrained(tokenizer, tmp_path, chat_tokens=False)
    auto = AutoTokenizer.from_pretrained(tmp_path)
    assert len(auto) == 384 and auto.chat_template is None and auto.convert_ids_to_tokens(300) == "<|dummy_0|>"
    assert not set(CHAT_TOKENS) & set(auto.get_vocab()) and auto.eos_token_id == 0


def test_chat_template_suits_trl_assistant_only_loss(trained):
    utils = pytest.importorskip("trl.chat_template_utils")
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(trained[0])
    assert utils.has_generation_markers(auto.chat_template)
    assert utils.is_chat_template_stop_token_trained(auto)
    assert utils.is_chat_template_prefix_preserving(auto)


def test_sample_sizes():
    available = {"a": 1000, "b": 100, "c": 10}
    assert sample_sizes(available, 50, "balanced") == {"a": 50, "b": 50, "c": 10}
    # 110 documents in proportion 1000:100:10 -> 99.1, 9.91, 0.99: floors 99, 9, 0, the two largest remainders +1
    assert sample_sizes(available, 50, "proportional") == {"a": 99, "b": 10, "c": 1}
    assert sample_sizes(available, 5000, "proportional") == available


def test_sample_is_capped_and_deterministic(clean_dir):
    def texts(seed, sampling="balanced"):
        sample = plan_sample([clean_dir], cap=5, sampling=sampling, seed=seed)
        return sample, list(sample.texts())

    sample, first = texts(1)
    assert sample.counts["en"].documents == 40 and sample.sizes["en"] == 5 and sample.sizes["lo"] == 2
    assert sample.counts["en"].sampled_documents == 5 and len(first) == sample.documents == 44 * 5 + 2
    assert texts(1)[1] == first and texts(2)[1] != first
    proportional, _ = texts(1, "proportional")
    assert proportional.documents == sample.documents and proportional.sizes["en"] > proportional.sizes["fr"]


def test_training_is_deterministic(clean_dir, tmp_path):
    config = TokenizerSection(vocab_size=600, max_documents_per_language=3)
    hashes = [train_tokenizer(config, [clean_dir], tmp_path / str(i), seed=5)["files"]["tokenizer.json"]
              for i in range(2)]
    assert hashes[0] == hashes[1]


def test_input_formats(tmp_path):
    import zstandard

    (tmp_path / "text" / "fr").mkdir(parents=True)
    (tmp_path / "text" / "fr" / "a.txt").write_text(SENTENCES["fr"], encoding="utf-8")
    (tmp_path / "text" / "fr" / "empty.txt").write_text("  \n", encoding="utf-8")
    lines = [json.dumps({"text": SENTENCES["de"], "language": "de"}),
             json.dumps({"text": SENTENCES["zh"], "language": "zh_CN"}),
             json.dumps({"text": SENTENCES["ja"], "metadata": {"language": "ja"}}), ""]
    (tmp_path / "mixed.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("\n".join(lines).encode()))
    write_jsonl_gz(tmp_path / "ko" / "00000.jsonl.gz", [{"text": SENTENCES["ko"]}])
    sample = plan_sample([tmp_path / "text", tmp_path / "mixed.jsonl.zst", tmp_path / "ko"], cap=10,
                         sampling="balanced", seed=0)
    assert {lang: c.documents for lang, c in sample.counts.items()} == {"fr": 1, "de": 1, "zh": 1, "ja": 1, "ko": 1}
    assert sorted(sample.texts()) == sorted(SENTENCES[lang] for lang in ("fr", "de", "zh", "ja", "ko"))


@pytest.mark.parametrize("content, message", [
    (b'{"text": "ok", "language": "fr"}\n{"text": "bad\n', r"bad\.jsonl:2: not a JSON line"),
    (b'{"text": 3, "language": "fr"}\n', r"bad\.jsonl:1: expected a JSON object with a string field \"text\""),
    (b'{"text": "ok"}\n', r"bad\.jsonl:1: no language"),
    (b'{"text": "ok", "language": "sr"}\n', r"bad\.jsonl:1: unknown language 'sr'"),
])
def test_bad_records_name_file_and_line(tmp_path, content, message):
    (tmp_path / "bad.jsonl").write_bytes(content)
    with pytest.raises(FuxiError, match=message):
        plan_sample([tmp_path / "bad.jsonl"], cap=10, sampling="balanced", seed=0)


def test_bad_corpora_are_clear_errors(tmp_path, clean_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FuxiError, match="empty corpus: no .jsonl"):
        plan_sample([tmp_path / "empty"], cap=10, sampling="balanced", seed=0)
    write_jsonl_gz(tmp_path / "blank" / "fr" / "00000.jsonl.gz", [{"text": "   "}])
    with pytest.raises(FuxiError, match="empty corpus: no documents"):
        plan_sample([tmp_path / "blank"], cap=10, sampling="balanced", seed=0)
    with pytest.raises(FuxiError, match=r"no documents for language\(s\) fr in"):
        plan_sample([tmp_path / "blank", clean_dir / "de"], cap=10, sampling="balanced", seed=0)
    with pytest.raises(FuxiError, match=r"no documents for language\(s\) de in"):
        plan_sample([clean_dir / "fr"], cap=10, sampling="balanced", seed=0, languages=["fr", "de"])
    with pytest.raises(FuxiError, match="no such file or directory"):
        plan_sample([tmp_path / "missing"], cap=10, sampling="balanced", seed=0)
    (tmp_path / "cut.jsonl.gz").write_bytes((clean_dir / "en" / "00000.jsonl.gz").read_bytes()[:200])
    with pytest.raises(FuxiError, match=r"cut\.jsonl\.gz:\d+: truncated or corrupt compressed file"):
        plan_sample([tmp_path / "cut.jsonl.gz"], cap=10, sampling="balanced", seed=0)


def byte_tokenizer(tmp_path):
    """No merges: every UTF-8 byte is one token, so fertility is bytes per word, checkable by hand."""
    tokenizer, _ = train_bpe([], VocabularyLayout(257, False, 1))
    tokenizer.save(str(tmp_path / "bytes.json"))
    return tmp_path / "bytes.json"


def test_fertility_on_a_hand_checked_example(tmp_path):
    parallel = ParallelSet()
    parallel.add("1", {"en": "Hello, world!", "ru": "Привет, мир!", "zh": "你好，世界。"})
    parallel.add("2", {"en": "A cat -- here.", "ja_JP": "猫です", "xx": "skipped"})
    measurements = {m.language: m for m in measure([load_named_tokenizer(byte_tokenizer(tmp_path))], parallel)}
    # en: 2 + 3 words ("--" is punctuation, not a word); 13 + 14 bytes, one token per byte
    assert (measurements["en"].words, measurements["en"].tokens, measurements["en"].units) == (5, 27, 2)
    assert measurements["en"].fertility == 5.4 and measurements["en"].bytes_per_token == 1.0
    # ru: 2 words, 6 + 3 Cyrillic letters of 2 bytes + ", " + "!" = 21 bytes
    assert (measurements["ru"].words, measurements["ru"].tokens) == (2, 21)
    # zh: every Han character is a word, the full-width punctuation is not: 4 words; 6 characters of 3 bytes
    assert (measurements["zh"].word, measurements["zh"].words, measurements["zh"].tokens) == ("character", 4, 18)
    assert (measurements["ja"].words, measurements["ja"].tokens) == (3, 9)
    assert parallel.skipped_languages == {"xx"} and list(measurements) == ["en", "ja", "ru", "zh"]
    summary = summarize_fertility(list(measurements.values()))["bytes"]
    assert summary["best"] == {"language": "en", "fertility": 5.4}  # zh and ja are per character, not compared
    assert summary["worst"] == {"language": "ru", "fertility": 10.5} and summary["worst_to_best"] == 1.9444


def test_parallel_formats(tmp_path):
    (tmp_path / "set.jsonl").write_text(
        json.dumps({"id": "u1", "texts": {"en": "one two", "fr": "un deux"}}) + "\n\n", encoding="utf-8")
    (tmp_path / "set.tsv").write_text("en\tde\tsr\nthree four\tdrei vier\ttri\n", encoding="utf-8")
    flores = tmp_path / "flores200_dataset" / "devtest"
    flores.mkdir(parents=True)
    for name, lines in {"eng_Latn": "a b\nc d", "zho_Hans": "中文\n汉字", "zho_Hant": "中文\n漢字",
                        "srp_Cyrl": "x\ny"}.items():
        (flores / f"{name}.devtest").write_text(lines + "\n", encoding="utf-8")
    units = read_parallel([tmp_path / "set.jsonl", tmp_path / "set.tsv"]).units
    assert units == [{"id": "u1", "texts": {"en": "one two", "fr": "un deux"}},
                     {"id": "set.tsv:2", "texts": {"en": "three four", "de": "drei vier"}}]
    flores_set = read_parallel([tmp_path / "flores200_dataset"])
    assert [u["texts"] for u in flores_set.units] == [{"en": "a b", "zh": "中文"}, {"en": "c d", "zh": "汉字"}]
    assert flores_set.skipped_languages == {"srp_Cyrl"}
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "texts": ["no"]}\n', encoding="utf-8")
    with pytest.raises(FuxiError, match=r"bad\.jsonl:1: expected"):
        read_parallel([tmp_path / "bad.jsonl"])
    (tmp_path / "ragged.tsv").write_text("en\tfr\nonly one\n", encoding="utf-8")
    with pytest.raises(FuxiError, match=r"ragged\.tsv:2: 1 columns, the header has 2"):
        read_parallel([tmp_path / "ragged.tsv"])


def test_tables_and_plot(trained, tmp_path):
    parallel = ParallelSet()
    parallel.add("1", {lang: SENTENCES[lang] for lang in ("en", "hi", "th")})
    tokenizers = [load_named_tokenizer(f"ours={trained[0]}"), load_named_tokenizer(byte_tokenizer(tmp_path))]
    measurements = measure(tokenizers, parallel)
    for suffix in ("csv", "json", "md"):
        write_table(measurements, tmp_path / f"t.{suffix}")
    csv_lines = (tmp_path / "t.csv").read_text().splitlines()
    assert csv_lines[0] == "tokenizer,language,word,units,words,tokens,bytes,fertility,bytes_per_token"
    assert len(csv_lines) == 7 and csv_lines[1].startswith("ours,en,whitespace,1,9,")
    table = json.loads((tmp_path / "t.json").read_text())
    assert set(table["summary"]) == {"ours", "bytes"} and table["summary"]["ours"]["languages"] == 2
    assert (tmp_path / "t.md").read_text() == markdown(measurements)
    assert "| th * | 1 |" in markdown(measurements)
    pytest.importorskip("matplotlib")
    plot(measurements, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FuxiError, match="two tokenizers have the same name"):
        measure([tokenizers[0], tokenizers[0]], parallel)


def in_process(*args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code


def test_pipeline_stage_reads_the_data_stage(clean_dir, tmp_path, capsys):
    import shutil

    shutil.copytree(clean_dir, tmp_path / "data" / "clean")
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"fingerprint": "abc"}))
    (tmp_path / "data" / "parallel").mkdir()
    (tmp_path / "data" / "parallel" / "tar.jsonl").write_text(
        json.dumps({"id": "tar:1", "texts": {lang: SENTENCES[lang] for lang in ("en", "fr", "ta")}}) + "\n")
    overrides = [f"output_dir={tmp_path}", "tokenizer.vocab_size=700", "tokenizer.max_documents_per_language=3"]
    assert in_process("tokenizer", "train", "tiny", *(f"--set={o}" for o in overrides)) == 0
    manifest = json.loads((tmp_path / "tokenizer" / "manifest.json").read_text())
    assert manifest["stats"]["inputs"] == {"data": "abc"} and manifest["stats"]["vocabulary"]["size"] == 768
    assert manifest["stats"]["sample"]["languages"]["en"]["sampled_documents"] == 3
    assert set(manifest["stats"]["fertility"]["per_language"]) == {"en", "fr", "ta"}
    assert (tmp_path / "tokenizer" / "fertility.md").is_file()

    capsys.readouterr()
    assert in_process("tokenizer", "fertility", "--recipe", "tiny", f"--set=output_dir={tmp_path}",
                      "--language", "ta", "--table", str(tmp_path / "f.csv")) == 0
    printed = capsys.readouterr().out
    assert "| ta | 1 |" in printed and "| en |" not in printed and (tmp_path / "f.csv").is_file()
    assert in_process("tokenizer", "train", "tiny", f"--set=output_dir={tmp_path / 'nodata'}") == 2
    assert "stage tokenizer reads data, which has not run yet" in capsys.readouterr().err
