import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)

REQUIRE_ALL = os.environ.get("FUXITRANYU_REQUIRE_ALL") == "1"
"""Set by .ci/run, which installs everything the tests can use: there a test that lacks Chromium, KenLM's lmplz, a
C++ compiler or the machine's gettext catalogs fails instead of skipping."""


def skip_unless(available: bool, reason: str) -> None:
    """Skip, saying why, on a machine without something a test needs; fail where FUXITRANYU_REQUIRE_ALL=1."""
    if available:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{reason}; FUXITRANYU_REQUIRE_ALL=1 says this machine must have it")
    pytest.skip(reason)


@pytest.fixture
def tiny_config():
    from fuxitranyu.model import preset_config

    return preset_config("tiny", vocab_size=512, num_hidden_layers=2, max_position_embeddings=64)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    """A trained ChatML tokenizer directory (vocabulary 384 = 300 learned + 2 chat tokens + padding to 128), from a few
    sentences in several scripts: what the tokenizer stage writes, in well under a second."""
    from fuxitranyu.tokenizer.layout import VocabularyLayout
    from fuxitranyu.tokenizer.train import save_pretrained, train_bpe

    texts = ["The quick brown fox jumps over the lazy dog.", "Le renard brun saute par-dessus le chien paresseux.",
             "Съешь же ещё этих мягких французских булок.", "汉语是世界上使用人数最多的语言之一。",
             "ภาษาไทยเป็นภาษาราชการของประเทศไทย", "اردو پاکستان کی قومی زبان ہے۔"] * 20
    tokenizer, _ = train_bpe(texts, VocabularyLayout(300, chat_tokens=True, pad_to_multiple_of=128))
    out = tmp_path_factory.mktemp("tokenizer")
    save_pretrained(tokenizer, out, chat_tokens=True)
    return out


REAL_LANGUAGES = {"fr": "fr", "de": "de", "ru": "ru", "zh": "zh_CN", "ja": "ja", "ar": "ar", "hi": "hi", "th": "th",
                  "vi": "vi", "es": "es"}
REAL_DOMAINS = ("coreutils", "grep", "sed", "bash", "apt", "dpkg", "findutils", "gettext-runtime", "make", "tar")


@pytest.fixture(scope="session")
def gettext_documents():
    """Real text: documents of this machine's gettext catalogs (several domains, ten languages in eight scripts),
    built as the `system` source builds them. {language: [document, ...]}."""
    from fuxitranyu.data.system import chunk_lines, read_catalog

    documents = {}
    for language, locale in REAL_LANGUAGES.items():
        lines = set()
        for domain in REAL_DOMAINS:
            path = Path("/usr/share/locale") / locale / "LC_MESSAGES" / f"{domain}.mo"
            if path.is_file():
                lines.update(read_catalog(path).values())
        if lines:
            documents[language] = list(chunk_lines(sorted(lines), 4000))
    skip_unless(len(documents) >= 6, "this machine has too few gettext catalogs in /usr/share/locale for the "
                                     "real-text tests")
    return documents


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The `smoke` recipe run once per test session from an empty directory, on this machine's real text: every stage
    of the default run, small. Returns (recipe, manifests by stage)."""
    from fuxitranyu.pipeline import run_pipeline
    from fuxitranyu.recipe import load_recipe

    skip_unless(any(Path("/usr/share/locale").glob("fr/LC_MESSAGES/*.mo")),
                "this machine has no gettext catalogs in /usr/share/locale for the smoke run")
    recipe = load_recipe("smoke", [f"output_dir={tmp_path_factory.mktemp('smoke')}"])
    manifests = run_pipeline(recipe)
    return recipe, {manifest["stage"]: manifest for manifest in manifests}
