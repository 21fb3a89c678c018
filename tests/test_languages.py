import pytest

from fuxitranyu.errors import FuxiError, UnknownLanguageError
from fuxitranyu.languages import (
    CODES,
    LABELS,
    NATURAL_LANGUAGES,
    PROGRAMMING_LANGUAGES,
    label,
    language,
    programming_language,
)


def test_tables_2_and_3_complete():
    assert len(NATURAL_LANGUAGES) == 43 and len(set(CODES)) == 43
    assert len(PROGRAMMING_LANGUAGES) == 16
    assert sum(p.paper_share for p in PROGRAMMING_LANGUAGES) == pytest.approx(1.0, abs=0.001)
    assert language("lo").family == "Kra-Dai" and language("my").script == "Mymr"
    assert language("zh").scripts == ("Hans", "Hant") and language("uz").scripts == ("Latn", "Cyrl")


@pytest.mark.parametrize("code, expected", [
    ("fr", "fr"), ("zh_CN", "zh"), ("zh_TW", "zh"), ("zh_HK", "zh"), ("zh-Hant", "zh"), ("pt_BR", "pt"),
    ("pt_PT", "pt"), ("bn_IN", "bn"), ("fil", "tl"), ("kmr", "ku"), ("ckb", "ku"), ("uz@cyrillic", "uz"),
    ("ca@valencia", "ca"), ("en@quot", "en"), ("de_DE.UTF-8", "de"), ("iw", "he"), ("zho_Hans", "zh"),
    ("arb_Arab", "ar"), ("pes", "fa"), ("zsm", "ms"), ("VI", "vi"),
    # regional varieties that identifiers name on their own count as their macrolanguage
    ("ary", "ar"), ("arz", "ar"), ("apc", "ar"), ("wuu", "zh"), ("yue", "zh"), ("nan", "zh"), ("prs", "fa"),
    ("uzs", "uz"), ("sdh", "ku"),
])
def test_locale_lookup(code, expected):
    assert language(code).code == expected


def test_language_part_names_supported_and_other_languages_and_nothing_else():
    from fuxitranyu.languages import language_part

    assert [language_part(c) for c in ("pt_BR", "ary", "eng", "sw_KE", "swh", "gl", "English", "", "x")] == \
        ["pt", "ar", "en", "sw", "swh", "gl", None, None, None]


@pytest.mark.parametrize("code", ["sr@latin", "nb", "xx", "eo", "", "english", "zz_ZZ", "gl", "mk", "tt"])
def test_unknown_codes_raise_clear_errors(code):
    with pytest.raises(UnknownLanguageError) as info:
        language(code)
    assert isinstance(info.value, FuxiError)
    assert "not one of the 43 supported languages" in str(info.value) or "empty" in str(info.value)
    if code:
        assert repr(code) in str(info.value)


def test_programming_language_lookup():
    assert programming_language("lib/python3.11/os.py").name == "Python"
    assert programming_language("arch/x86/boot.S").name == "Assembly"
    assert programming_language("include/stdio.h").name == "C"
    assert programming_language("c++").name == "C++"
    assert [p.label for p in PROGRAMMING_LANGUAGES][:7] == [
        "code-java", "code-javascript", "code-python", "code-php", "code-c", "code-cpp", "code-csharp"]
    assert programming_language("code-visualbasic").name == "Visual Basic"
    assert label("zh_TW") == "zh" and label("C#") == "code-csharp" and label("code-go") == "code-go"
    assert len(set(LABELS)) == 59
    with pytest.raises(UnknownLanguageError, match="README.md"):
        programming_language("README.md")
