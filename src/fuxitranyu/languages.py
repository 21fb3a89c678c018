"""The languages FuxiTranyu supports: 43 natural languages (paper Table 2) and 16 programming languages (Table 3).

Our public API speaks the paper's ISO 639-1 codes. Codes seen in the wild (gettext locales such as `zh_CN` or
`uz@cyrillic`, ISO 639-3 and FLORES-200 codes) are resolved here and nowhere else.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import PurePath

from fuxitranyu.errors import UnknownLanguageError


@dataclass(frozen=True)
class Language:
    code: str
    """ISO 639-1 code, as in the paper."""
    name: str
    family: str
    scripts: tuple[str, ...]
    """ISO 15924 scripts the language is written in, the most common first."""
    iso639_3: str
    flores: str
    """FLORES-200 code (ISO 639-3 of the variety + script), the form datatrove and Flores-style data use."""

    @property
    def script(self) -> str:
        return self.scripts[0]


@dataclass(frozen=True)
class ProgrammingLanguage:
    name: str
    extensions: tuple[str, ...]
    paper_size_gb: float
    paper_share: float
    """Fraction of the code data in the paper (Table 3), e.g. 0.1794 for Java."""

    @property
    def label(self) -> str:
        """The language label of code documents in our artifacts: `code-python`, `code-cpp`, `code-csharp`, ..."""
        slug = self.name.lower().replace("++", "pp").replace("#", "sharp").replace(" ", "")
        return f"code-{slug}"


def _lang(code, name, family, scripts, iso3, flores) -> Language:
    return Language(code, name, family, tuple(scripts.split()), iso3, flores)


# Table 2. Scripts and FLORES codes are not in the paper; they name the standard variety of each language.
NATURAL_LANGUAGES: tuple[Language, ...] = (
    _lang("ar", "Arabic", "Afro-Asiatic", "Arab", "ara", "arb_Arab"),
    _lang("bg", "Bulgarian", "Indo-European", "Cyrl", "bul", "bul_Cyrl"),
    _lang("bn", "Bengali", "Indo-European", "Beng", "ben", "ben_Beng"),
    _lang("ca", "Catalan", "Indo-European", "Latn", "cat", "cat_Latn"),
    _lang("cs", "Czech", "Indo-European", "Latn", "ces", "ces_Latn"),
    _lang("de", "German", "Indo-European", "Latn", "deu", "deu_Latn"),
    _lang("el", "Greek", "Indo-European", "Grek", "ell", "ell_Grek"),
    _lang("en", "English", "Indo-European", "Latn", "eng", "eng_Latn"),
    _lang("es", "Spanish", "Indo-European", "Latn", "spa", "spa_Latn"),
    _lang("fa", "Persian", "Indo-European", "Arab", "fas", "pes_Arab"),
    _lang("fi", "Finnish", "Uralic", "Latn", "fin", "fin_Latn"),
    _lang("fr", "French", "Indo-European", "Latn", "fra", "fra_Latn"),
    _lang("he", "Hebrew", "Afro-Asiatic", "Hebr", "heb", "heb_Hebr"),
    _lang("hi", "Hindi", "Indo-European", "Deva", "hin", "hin_Deva"),
    _lang("hu", "Hungarian", "Uralic", "Latn", "hun", "hun_Latn"),
    _lang("id", "Indonesian", "Austronesian", "Latn", "ind", "ind_Latn"),
    _lang("it", "Italian", "Indo-European", "Latn", "ita", "ita_Latn"),
    _lang("ja", "Japanese", "Japonic", "Jpan", "jpn", "jpn_Jpan"),
    _lang("kk", "Kazakh", "Turkic", "Cyrl", "kaz", "kaz_Cyrl"),
    _lang("km", "Khmer", "Austroasiatic", "Khmr", "khm", "khm_Khmr"),
    _lang("ko", "Korean", "Koreanic", "Kore", "kor", "kor_Hang"),
    _lang("ku", "Kurdish", "Indo-European", "Latn Arab", "kur", "kmr_Latn"),
    _lang("ky", "Kyrgyz", "Turkic", "Cyrl", "kir", "kir_Cyrl"),
    _lang("lo", "Lao", "Kra-Dai", "Laoo", "lao", "lao_Laoo"),
    _lang("ms", "Malay", "Austronesian", "Latn", "msa", "zsm_Latn"),
    _lang("my", "Burmese", "Sino-Tibetan", "Mymr", "mya", "mya_Mymr"),
    _lang("nl", "Dutch", "Indo-European", "Latn", "nld", "nld_Latn"),
    _lang("pl", "Polish", "Indo-European", "Latn", "pol", "pol_Latn"),
    _lang("pt", "Portuguese", "Indo-European", "Latn", "por", "por_Latn"),
    _lang("ro", "Romanian", "Indo-European", "Latn", "ron", "ron_Latn"),
    _lang("ru", "Russian", "Indo-European", "Cyrl", "rus", "rus_Cyrl"),
    _lang("sv", "Swedish", "Indo-European", "Latn", "swe", "swe_Latn"),
    _lang("ta", "Tamil", "Dravidian", "Taml", "tam", "tam_Taml"),
    _lang("tg", "Tajik", "Indo-European", "Cyrl", "tgk", "tgk_Cyrl"),
    _lang("th", "Thai", "Kra-Dai", "Thai", "tha", "tha_Thai"),
    _lang("tk", "Turkmen", "Turkic", "Latn", "tuk", "tuk_Latn"),
    _lang("tl", "Filipino", "Austronesian", "Latn", "tgl", "tgl_Latn"),
    _lang("tr", "Turkish", "Turkic", "Latn", "tur", "tur_Latn"),
    _lang("uk", "Ukrainian", "Indo-European", "Cyrl", "ukr", "ukr_Cyrl"),
    _lang("ur", "Urdu", "Indo-European", "Arab", "urd", "urd_Arab"),
    _lang("uz", "Uzbek", "Turkic", "Latn Cyrl", "uzb", "uzn_Latn"),
    _lang("vi", "Vietnamese", "Austroasiatic", "Latn", "vie", "vie_Latn"),
    _lang("zh", "Chinese", "Sino-Tibetan", "Hans Hant", "zho", "zho_Hans"),
)

# Table 3 (sizes in GB and shares of the code data). Extensions are ours; `.h` counts as C.
PROGRAMMING_LANGUAGES: tuple[ProgrammingLanguage, ...] = (
    ProgrammingLanguage("Java", (".java",), 96, 0.1794),
    ProgrammingLanguage("JavaScript", (".js", ".mjs", ".cjs", ".jsx"), 70, 0.1308),
    ProgrammingLanguage("Python", (".py", ".pyi"), 63, 0.1177),
    ProgrammingLanguage("PHP", (".php",), 59, 0.1102),
    ProgrammingLanguage("C", (".c", ".h"), 53, 0.0990),
    ProgrammingLanguage("C++", (".cpp", ".cc", ".cxx", ".hpp", ".hh", ".hxx"), 52, 0.0972),
    ProgrammingLanguage("C#", (".cs",), 48, 0.0897),
    ProgrammingLanguage("TypeScript", (".ts", ".tsx", ".mts", ".cts"), 29, 0.0542),
    ProgrammingLanguage("Go", (".go",), 26, 0.0486),
    ProgrammingLanguage("SQL", (".sql",), 11, 0.0206),
    ProgrammingLanguage("Rust", (".rs",), 9.1, 0.0170),
    ProgrammingLanguage("Ruby", (".rb",), 7.9, 0.0148),
    ProgrammingLanguage("Scala", (".scala", ".sc"), 5.1, 0.0095),
    ProgrammingLanguage("Lua", (".lua",), 3.0, 0.0056),
    ProgrammingLanguage("Assembly", (".s", ".S", ".asm"), 1.6, 0.0030),
    ProgrammingLanguage("Visual Basic", (".vb", ".vbs", ".bas"), 1.5, 0.0028),
)

BY_CODE: dict[str, Language] = {lang.code: lang for lang in NATURAL_LANGUAGES}
CODES: tuple[str, ...] = tuple(BY_CODE)

# Codes that are not the ISO 639-1 code of the language but mean it: legacy ISO codes, gettext's choice of 3-letter
# codes (Filipino `fil`), and the members of the ISO 639-3 macrolanguages we support — regional varieties that
# language identifiers name on their own (fastText's `arz`, `wuu`, `yue`; Moroccan Arabic `ary`).
_MACROLANGUAGE_MEMBERS: dict[str, tuple[str, ...]] = {
    "ar": ("arb", "ary", "arz", "apc", "ajp", "acm", "acq", "acw", "acx", "acy", "adf", "aeb", "aec", "afb", "apd",
           "arq", "ars", "auz", "avl", "ayh", "ayl", "ayn", "ayp", "abv", "shu", "ssh", "pga"),
    "zh": ("cmn", "wuu", "yue", "gan", "hak", "hsn", "nan", "cdo", "cjy", "cpx", "czh", "czo", "mnp", "lzh"),
    "fa": ("pes", "prs"),
    "ku": ("kmr", "ckb", "sdh"),
    "ms": ("zsm", "zlm"),
    "uz": ("uzn", "uzs"),
}
_ALIASES: dict[str, str] = {"iw": "he", "in": "id", "fil": "tl"}
for _macro_, _members_ in _MACROLANGUAGE_MEMBERS.items():
    _ALIASES.update(dict.fromkeys(_members_, _macro_))
for _lang_ in NATURAL_LANGUAGES:
    _ALIASES.setdefault(_lang_.iso639_3, _lang_.code)
    _ALIASES.setdefault(_lang_.flores.split("_")[0], _lang_.code)

# language[_territory][.encoding][@modifier]; territory, script and modifier (`uz@cyrillic`, `en@quot`) do not change
# the language, so `sr@latin` is Serbian (unsupported) whatever its script.
_LOCALE = re.compile(r"^(?P<lang>[A-Za-z]{2,3})(?:[_-](?P<rest>[A-Za-z0-9_-]+))?(?:\.[^@]*)?(?:@(?P<mod>\w+))?$")


def language(code: str) -> Language:
    """The supported language a code names: `fr`, `pt_BR`, `zh-Hant`, `uz@cyrillic`, `fil`, `kmr`, `zho_Hans`, ...

    Raises `UnknownLanguageError` for anything else, naming the closest supported codes.
    """
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError(f"empty or non-string language code {code!r}")
    match = _LOCALE.match(code.strip())
    if match:
        base = match["lang"].lower()
        base = _ALIASES.get(base, base)
        if base in BY_CODE:
            return BY_CODE[base]
    suggestions = difflib.get_close_matches(code.strip().lower()[:3], CODES, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(suggestions)}?)" if suggestions else ""
    raise UnknownLanguageError(
        f"unknown language code {code!r}: not one of the 43 supported languages{hint}; "
        f"supported: {' '.join(CODES)}"
    )


def supported_code(code: str) -> str | None:
    """The ISO code of the supported language `code` names, or None (for codes seen in the wild, not validated)."""
    try:
        return language(code).code
    except UnknownLanguageError:
        return None


def language_part(code: str) -> str | None:
    """The language a locale-like code names, supported or not: `pt_BR` -> `pt`, `ary` -> `ar`, `swh` -> `swh`,
    `sw_KE` -> `sw`; None when `code` is not shaped like one (`English`)."""
    match = _LOCALE.match(code.strip()) if isinstance(code, str) else None
    if match is None:
        return None
    base = _ALIASES.get(match["lang"].lower(), match["lang"].lower())
    return base


def is_supported(code: str) -> bool:
    return supported_code(code) is not None


_BY_EXTENSION: dict[str, ProgrammingLanguage] = {
    ext: lang for lang in PROGRAMMING_LANGUAGES for ext in lang.extensions
}
_BY_NAME: dict[str, ProgrammingLanguage] = {lang.name.lower(): lang for lang in PROGRAMMING_LANGUAGES}
_BY_LABEL: dict[str, ProgrammingLanguage] = {lang.label: lang for lang in PROGRAMMING_LANGUAGES}
LABELS: tuple[str, ...] = CODES + tuple(_BY_LABEL)
"""Every language label an artifact may carry: the 43 ISO codes, then the 16 `code-*` labels."""


def label(code_or_name: str) -> str:
    """The canonical label of a natural language code (`zh_CN` -> `zh`) or programming language (`C++` ->
    `code-cpp`)."""
    if code_or_name in _BY_LABEL or code_or_name.lower() in _BY_NAME:
        return programming_language(code_or_name).label
    return language(code_or_name).code


def programming_language(name_or_path: str) -> ProgrammingLanguage:
    """A programming language by name (`Python`, `c++`), label (`code-cpp`) or a file name's extension (`boot.S`)."""
    by_name = _BY_NAME.get(name_or_path.lower()) or _BY_LABEL.get(name_or_path)
    if by_name is not None:
        return by_name
    suffix = PurePath(name_or_path).suffix
    found = _BY_EXTENSION.get(suffix) or _BY_EXTENSION.get(suffix.lower())
    if found is None:
        raise UnknownLanguageError(
            f"{name_or_path!r} is not one of the 16 supported programming languages "
            f"({', '.join(_BY_NAME)}) and has no known extension"
        )
    return found


def label_or_none(name: str) -> str | None:
    """`label(name)`, or None for a code that is none of the supported languages."""
    try:
        return label(name)
    except UnknownLanguageError:
        return None
