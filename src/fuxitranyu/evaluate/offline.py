"""The data of the offline tasks (`tasks/parallel/`), cut from held-out parallel units: what the suite means without a
hub.

    <data>/bpb/<lang>.jsonl             {"id", "text"}                       every language with enough units
    <data>/translate_mc/<lang>.jsonl    {"id", "source", "choices", "gold"}  English -> every other language
    <data>/translate_chrf/<lang>.jsonl  {"id", "source", "target"}           English -> every other language

Units are taken in one seeded order, so every language sees the same units where it has them (the numbers of two
languages then describe the same content). Translation texts are put on one line (runs of whitespace become one
space): the chrF task generates a single line.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from fuxitranyu.evaluate.config import OfflineTasks
from fuxitranyu.evaluate.suite import PARALLEL, PARALLEL_TARGETS, SOURCE_LANGUAGE
from fuxitranyu.io import atomic_directory

CHOICES = 4
_SPACES = re.compile(r"\s+")


@dataclass
class OfflineData:
    folder: Path
    bpb: dict[str, int] = field(default_factory=dict)
    """Language -> units in its bits-per-byte file."""
    translation: dict[str, int] = field(default_factory=dict)
    """Target language -> English-aligned units in its translation files (multiple choice)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Language -> why it has no offline tasks."""

    @property
    def languages(self) -> dict[str, tuple[str, ...]]:
        """The languages a suite's `parallel` / `parallel-targets` stand for."""
        return {PARALLEL: tuple(sorted(self.bpb)), PARALLEL_TARGETS: tuple(sorted(self.translation))}

    def as_dict(self) -> dict:
        return {"bpb": self.bpb, "translation": self.translation, "skipped": self.skipped}


def _one_line(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _fits(unit: dict, language: str, limit: int) -> bool:
    return 0 < len(unit["texts"].get(language, "").encode("utf-8")) <= limit


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def _choice_records(pairs: list[dict], language: str, count: int, rng: random.Random) -> list[dict]:
    """Each unit's translation among three translations of other units (distinct texts), in a seeded order."""
    records = []
    for unit in pairs[:count]:
        right = _one_line(unit["texts"][language])
        others = sorted({_one_line(u["texts"][language]) for u in pairs} - {right})
        choices = rng.sample(others, CHOICES - 1) + [right]
        rng.shuffle(choices)
        records.append({"id": unit["id"], "source": _one_line(unit["texts"][SOURCE_LANGUAGE]), "choices": choices,
                        "gold": choices.index(right)})
    return records


def write_offline_data(units: list[dict], folder: Path, config: OfflineTasks, seed: int) -> OfflineData:
    """Write the offline tasks' files for every language of `units` (`{"id", "texts": {lang: text}}`) into `folder`,
    which appears whole or not at all (one rename, rather than a sync per file)."""
    with atomic_directory(folder) as scratch:
        data = _write_files(units, scratch, config, seed)
    data.folder = folder
    return data


def _write_files(units: list[dict], folder: Path, config: OfflineTasks, seed: int) -> OfflineData:
    order = sorted(units, key=lambda u: u["id"])
    random.Random(seed).shuffle(order)
    data = OfflineData(folder)
    languages = sorted({lang for unit in units for lang in unit["texts"]})
    for language in languages:
        kept = [u for u in order if _fits(u, language, config.max_bytes)]
        if len(kept) < config.min_units:
            data.skipped[language] = f"{len(kept)} units of at most {config.max_bytes} bytes"
            continue
        chosen = kept[:config.units_per_language]
        _write_jsonl(folder / "bpb" / f"{language}.jsonl",
                     [{"id": u["id"], "text": u["texts"][language]} for u in chosen])
        data.bpb[language] = len(chosen)
        if language == SOURCE_LANGUAGE:
            continue
        pairs = [u for u in kept if _fits(u, SOURCE_LANGUAGE, config.max_bytes)]
        if len({_one_line(u["texts"][language]) for u in pairs}) < max(config.min_units, CHOICES):
            data.skipped[language] = f"{len(pairs)} units aligned with {SOURCE_LANGUAGE}: no translation tasks"
            continue
        rng = random.Random(f"{seed}:{language}")
        _write_jsonl(folder / "translate_mc" / f"{language}.jsonl",
                     _choice_records(pairs, language, config.units_per_language, rng))
        _write_jsonl(folder / "translate_chrf" / f"{language}.jsonl",
                     [{"id": u["id"], "source": _one_line(u["texts"][SOURCE_LANGUAGE]),
                       "target": _one_line(u["texts"][language])} for u in pairs[:config.translation_units]])
        data.translation[language] = min(len(pairs), config.units_per_language)
    return data
