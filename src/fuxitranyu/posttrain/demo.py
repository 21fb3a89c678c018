"""Offline demo data for SFT and DPO, built from the data stage's held-out parallel sets.

A unit of a parallel set holds the same string in several languages, so "translate this into French" has a real
answer: the unit's French text. SFT gets such instructions (written in several languages, between any two languages
of a unit); DPO gets pairs whose chosen answer is the right translation and whose rejected one is plausible but wrong:
the right text in another language, or another unit's text in the right language.

This is demo data. It teaches the chat format and translation on software-interface strings; real post-training
passes instruction and preference sets through `sft.data.sets` / `dpo.data.sets`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fuxitranyu.errors import FuxiError

# Native names, so that an instruction in any language can name the target language the same way.
NATIVE_NAMES = {
    "ar": "العربية", "bg": "български", "bn": "বাংলা", "ca": "català", "cs": "čeština", "de": "Deutsch",
    "el": "Ελληνικά", "en": "English", "es": "español", "fa": "فارسی", "fi": "suomi", "fr": "français",
    "he": "עברית", "hi": "हिन्दी", "hu": "magyar", "id": "Bahasa Indonesia", "it": "italiano", "ja": "日本語",
    "kk": "қазақ тілі", "km": "ខ្មែរ", "ko": "한국어", "ku": "Kurdî", "ky": "кыргызча", "lo": "ລາວ",
    "ms": "Bahasa Melayu", "my": "မြန်မာ", "nl": "Nederlands", "pl": "polski", "pt": "português", "ro": "română",
    "ru": "русский", "sv": "svenska", "ta": "தமிழ்", "tg": "тоҷикӣ", "th": "ไทย", "tk": "türkmençe",
    "tl": "Filipino", "tr": "Türkçe", "uk": "українська", "ur": "اردو", "uz": "oʻzbekcha", "vi": "Tiếng Việt",
    "zh": "中文",
}

INSTRUCTIONS = {
    "en": "Translate into {target}:\n{text}",
    "zh": "请翻译成{target}：\n{text}",
    "es": "Traduce al idioma {target}:\n{text}",
    "fr": "Traduis vers la langue {target} :\n{text}",
    "ru": "Переведи на язык «{target}»:\n{text}",
    "ar": "ترجم إلى لغة {target}:\n{text}",
}


@dataclass(frozen=True)
class Translation:
    unit: int
    """Index of the unit in the parallel set."""
    source: str
    target: str
    prompt_language: str

    def instruction(self, texts: dict[str, str]) -> str:
        return INSTRUCTIONS[self.prompt_language].format(target=NATIVE_NAMES[self.target], text=texts[self.source])


@dataclass
class DemoSet:
    records: list[dict]
    """`{"messages": ...}` conversations, or `{"prompt", "chosen", "rejected"}` pairs, each with the `language` of
    its answer (the unit's locale)."""
    stats: dict


def usable_units(files: list[Path], max_chars: int) -> list[dict[str, str]]:
    """The texts of every unit with at least two languages whose texts are at most `max_chars` long."""
    from fuxitranyu.data.parallel import read_parallel

    units = []
    for unit in read_parallel(files).units:
        texts = {lang: " ".join(text.split()) for lang, text in unit["texts"].items() if len(text) <= max_chars}
        texts = {lang: text for lang, text in texts.items() if lang in NATIVE_NAMES and text}
        if len(texts) >= 2:
            units.append(texts)
    if not units:
        raise FuxiError(f"no parallel unit has two languages within {max_chars} characters",
                        path=", ".join(str(f) for f in files))
    return units


def sample_translations(units: list[dict[str, str]], count: int, prompt_languages: list[str],
                        rng: np.random.Generator) -> list[Translation]:
    picked = []
    for _ in range(count):
        unit = int(rng.integers(len(units)))
        source, target = rng.choice(sorted(units[unit]), size=2, replace=False)
        picked.append(Translation(unit, str(source), str(target), str(rng.choice(prompt_languages))))
    return picked


@dataclass(frozen=True)
class WrongAnswer:
    text: str
    kind: str
    """`wrong_language` (the right text in another language) or `wrong_unit` (another text in the right language)."""


def wrong_answer(translation: Translation, units: list[dict[str, str]], rng: np.random.Generator) -> WrongAnswer:
    """A plausible wrong translation: the right text in a language other than the target (the source itself when
    the unit has no third language), or another unit's text in the target language; half of each."""
    texts = units[translation.unit]
    right = texts[translation.target]
    if rng.random() < 0.5:
        others = sorted(lang for lang in texts if lang != translation.target and texts[lang] != right)
        if others:
            return WrongAnswer(texts[str(rng.choice(others))], "wrong_language")
    for _ in range(100):
        other = units[int(rng.integers(len(units)))].get(translation.target)
        if other is not None and other != right:
            return WrongAnswer(other, "wrong_unit")
    raise FuxiError(f"the parallel sets hold too few distinct {translation.target} texts for preference pairs")


def build_demo(files: list[Path], examples: int, prompt_languages: list[str], max_chars: int, seed: int,
               preference: bool) -> DemoSet:
    """`examples` SFT conversations, or preference pairs when `preference`, deterministic given the seed, from the
    parallel set `files`."""
    rng = np.random.default_rng([seed, int(preference)])
    units = usable_units(files, max_chars)
    translations = sample_translations(units, examples, prompt_languages, rng)
    records, kinds = [], Counter()
    for item in translations:
        texts = units[item.unit]
        user = [{"role": "user", "content": item.instruction(texts)}]
        answer = texts[item.target]
        if preference:
            wrong = wrong_answer(item, units, rng)
            kinds[wrong.kind] += 1
            records.append({"prompt": user, "chosen": [{"role": "assistant", "content": answer}],
                            "rejected": [{"role": "assistant", "content": wrong.text}], "language": item.target})
        else:
            records.append({"messages": user + [{"role": "assistant", "content": answer}], "language": item.target})
    stats = {
        "units": len(units),
        "examples": len(records),
        "sources": dict(sorted(Counter(t.source for t in translations).items())),
        "targets": dict(sorted(Counter(t.target for t in translations).items())),
        "prompt_languages": dict(sorted(Counter(t.prompt_language for t in translations).items())),
    }
    if preference:
        stats["rejected"] = dict(sorted(kinds.items()))
    return DemoSet(records, stats)
