"""What the analyses read: aligned parallel texts, the models (directories, NAME=PATH, pretraining checkpoints) and
the languages' shares of the training data."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fuxitranyu.analyze.config import split_named_path
from fuxitranyu.data.parallel import ParallelSet
from fuxitranyu.errors import FuxiError
from fuxitranyu.mix.artifacts import INDEX, PLAN
from fuxitranyu.pretrain.checkpoint import STATE, CorruptCheckpoint, describe, list_checkpoints, verify_files
from fuxitranyu.stage import MODEL

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


# ----------------------------------------------------------------------------------------------------------------
# Parallel texts


@dataclass(frozen=True)
class ParallelTexts:
    """The same units in every language: `texts[language][j]` translates unit `unit_ids[j]`."""

    languages: tuple[str, ...]
    unit_ids: tuple[str, ...]
    texts: dict[str, list[str]]

    def by_language(self) -> list[list[str]]:
        return [self.texts[language] for language in self.languages]

    def digest(self) -> str:
        """sha256 of the ids and texts, to tell in a manifest exactly what was measured."""
        payload = json.dumps([self.unit_ids, [self.texts[lang] for lang in self.languages]], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def reordered(self, languages: Sequence[str]) -> ParallelTexts:
        return ParallelTexts(tuple(languages), self.unit_ids, self.texts)

    def describe(self) -> dict:
        return {"languages": list(self.languages), "units": len(self.unit_ids), "sha256": self.digest(),
                "unit_ids": list(self.unit_ids)}


def aligned_texts(parallel: ParallelSet, languages: Sequence[str], max_sentences: int | None,
                  seed: int) -> ParallelTexts:
    """The units that have a text in every one of `languages` (default: every language of the set), at most
    `max_sentences` of them (a seeded sample, kept in input order)."""
    coverage = Counter(lang for unit in parallel.units for lang in unit["texts"])
    wanted = list(languages) or sorted(coverage)
    missing = [lang for lang in wanted if lang not in coverage]
    if missing:
        raise FuxiError(f"not in the parallel set: {', '.join(missing)} (it has {_coverage(coverage)})")
    units = [unit for unit in parallel.units if all(lang in unit["texts"] for lang in wanted)]
    if not units:
        raise FuxiError(f"no unit of the parallel set has a text in every one of {' '.join(wanted)}; choose fewer "
                        f"languages (units per language: {_coverage(coverage)})")
    if max_sentences is not None and len(units) > max_sentences:
        chosen = np.random.default_rng(seed).choice(len(units), size=max_sentences, replace=False)
        units = [units[i] for i in sorted(chosen)]
    return ParallelTexts(tuple(wanted), tuple(unit["id"] for unit in units),
                         {lang: [unit["texts"][lang] for unit in units] for lang in wanted})


def _coverage(coverage: Counter) -> str:
    return ", ".join(f"{lang} {n}" for lang, n in coverage.most_common())


# ----------------------------------------------------------------------------------------------------------------
# Training shares


def training_shares(mix: Path) -> dict[str, float]:
    """Each language's share of the pretraining tokens: the `sampled_tokens` of a mix's `index.json`, else the
    planned tokens of its `plan.json`. `mix` is the mix stage's directory or one of those files."""
    mix = Path(mix)
    candidates = [mix] if mix.is_file() else [mix / INDEX, mix / PLAN]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            tokens = (raw["sampled_tokens"] if "sampled_tokens" in raw else
                      {entry["language"]: entry["tokens"] for entry in raw["languages"]})
            total = sum(tokens.values())
            return {lang: n / total for lang, n in tokens.items()}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ZeroDivisionError) as err:
            raise FuxiError(f"not a mix index or plan: expected sampled_tokens or languages[].tokens ({err})",
                            path=path) from None
    raise FuxiError("no index.json or plan.json of a mix here", path=mix)


def order_by_share(languages: Sequence[str], shares: dict[str, float]) -> list[str]:
    """Largest share first; languages the mix does not have keep their order at the end."""
    return sorted(languages, key=lambda lang: -shares.get(lang, -1.0))


# ----------------------------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    tokenizer: Path
    """A directory with the tokenizer files (the model's own directory when it has them)."""
    step: int | None = None
    """For a pretraining checkpoint: its step."""
    tokens: int | None = None
    """For a pretraining checkpoint: training tokens seen."""
    same_as: str | None = None
    """The name of another model in the same analysis with these very weights: its results are reused."""


def has_tokenizer(directory: Path) -> bool:
    return any((Path(directory) / name).is_file() for name in TOKENIZER_FILES)


def model_spec(path: Path, name: str | None = None, tokenizer: Path | None = None) -> ModelSpec:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FuxiError("not a Hugging Face model directory: config.json is missing", path=path)
    tokenizer = tokenizer or (path if has_tokenizer(path) else None)
    if tokenizer is None:
        raise FuxiError("no tokenizer files beside the model; give one with --tokenizer", path=path)
    return ModelSpec(name or path.name, path, Path(tokenizer))


def checkpoint_specs(folder: Path, tokenizer: Path, limit: int | None = None) -> list[ModelSpec]:
    """Up to `limit` checkpoints of a pretraining run's `checkpoints/` folder, evenly spread with the last included,
    named `step-NNNNNN`, each with the training tokens it had seen."""
    paths = list_checkpoints(Path(folder))
    if not paths:
        raise FuxiError("no checkpoints (step-NNNNNN folders) here", path=folder)
    if limit is not None and len(paths) > limit:
        picks = np.unique(np.linspace(len(paths) - 1, 0, limit).round().astype(int))
        paths = [paths[i] for i in picks]
    specs = []
    for path in paths:
        try:
            checkpoint = describe(path)
            verify_files(checkpoint, skip=(STATE,))
        except CorruptCheckpoint as err:
            raise FuxiError(f"unusable checkpoint: {err.message}", path=err.path or path) from None
        specs.append(ModelSpec(path.name, path, Path(tokenizer), checkpoint.step, checkpoint.tokens))
    return specs


def parse_model_argument(argument: str, tokenizer: Path | None = None, limit: int | None = None
                         ) -> list[ModelSpec]:
    """`PATH` or `NAME=PATH` of a model directory, or a folder of pretraining checkpoints (every `step-*` in it,
    their tokenizer from `tokenizer`, the checkpoints themselves or the run's `model/` beside the folder)."""
    name, path = split_named_path(argument)
    if not path.exists():
        raise FuxiError("no such model directory", path=path)
    if (path / "config.json").is_file():
        return [model_spec(path, name, tokenizer)]
    if list_checkpoints(path):
        source = tokenizer or next((p for p in (list_checkpoints(path)[-1], path.parent / MODEL)
                                    if has_tokenizer(p)), None)
        if source is None:
            raise FuxiError("checkpoints without tokenizer files; give one with --tokenizer", path=path)
        return checkpoint_specs(path, source, limit)
    raise FuxiError("neither a model directory (config.json) nor a folder of step-NNNNNN checkpoints", path=path)


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    model: torch.nn.Module
    tokenizer: object


def load_analyzed_model(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """The model in eval mode on `device` in `dtype`, and its tokenizer; any Hugging Face causal LM (importing
    fuxitranyu registers ours)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import fuxitranyu  # noqa: F401  (registers FuxiTranyu with the Auto classes)

    try:
        model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype)
    except (OSError, ValueError, KeyError) as err:
        raise FuxiError(f"cannot load a causal LM ({err})", path=spec.path) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    except (OSError, ValueError, KeyError) as err:
        raise FuxiError(f"cannot load a tokenizer ({err})", path=spec.tokenizer) from None
    return LoadedModel(spec, model.to(device).eval(), tokenizer)
