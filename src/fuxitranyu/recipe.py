"""Recipes: YAML files validated into typed config objects, with dotted command-line overrides.

Each section is a pydantic model in its stage package's `config.py`, every field documented once by the docstring
under it (`fuxitranyu recipe docs` prints them). A recipe names
the file it came from in every error, and an override names the `--set` that caused it.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_core import to_jsonable_python

from fuxitranyu.analyze.config import AnalyzeSection
from fuxitranyu.config_base import Section
from fuxitranyu.data.config import DataSection
from fuxitranyu.errors import FuxiError, RecipeError
from fuxitranyu.evaluate.config import EvaluateSection
from fuxitranyu.mix.config import MixSection
from fuxitranyu.model.config import ModelSection
from fuxitranyu.posttrain.config import DpoSection, SftSection
from fuxitranyu.pretrain.config import PretrainSection
from fuxitranyu.report.config import ReportSection
from fuxitranyu.tokenizer.config import TokenizerSection

RUNS_ROOT = Path("runs")
"""Where a recipe's run goes when it names no output_dir: `runs/<name>/`."""


class Recipe(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Run name; outputs go to output_dir."""
    seed: int = 1234
    """One seed for every random choice of every stage."""
    output_dir: Path | None = None
    """Where the stages write their directories (default: runs/<name>)."""
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    tokenizer: TokenizerSection = TokenizerSection()
    mix: MixSection = MixSection()
    pretrain: PretrainSection = PretrainSection()
    sft: SftSection | None = None
    """Supervised fine-tuning (paper 4, Appendix A); null leaves the stage out."""
    dpo: DpoSection | None = None
    """DPO after SFT (paper 4, Appendix A); null leaves the stage out."""
    evaluate: EvaluateSection | None = None
    """Evaluation of the recipe's models (the `evaluate` stage); left out, the stage does not run."""
    analyze: AnalyzeSection | None = None
    """Neuron and representation analyses of the trained models (paper section 6); absent: the stage is off."""
    report: ReportSection | None = None
    """The report of the run (one HTML page from every stage's artifacts); absent: no report."""

    @property
    def run_dir(self) -> Path:
        return self.output_dir if self.output_dir is not None else RUNS_ROOT / self.name

    def build_model_config(self):
        """The model's config: the preset and its overrides for the architecture, the tokenizer's layout for the
        vocabulary size and the special ids (the tokenizer owns them; a model's vocab_size may not contradict it)."""
        from fuxitranyu.tokenizer.layout import ENDOFTEXT_ID

        if self.model.init_from:
            raise FuxiError(f"the recipe continues {self.model.init_from} (model.init_from), whose architecture is "
                            f"its own config.json, not a FuxiTranyu preset")
        config = self.model.to_config()
        config.vocab_size = self.tokenizer.layout().size
        config.bos_token_id = config.eos_token_id = ENDOFTEXT_ID
        return config

    def adaptation_targets(self) -> list[str]:
        """The languages an adaptation is for: the mix's languages when it continues a model (`model.init_from`) or
        replays others beside them, else the languages the tokenizer was extended for (empty when none says)."""
        if self.mix.languages and (self.model.init_from or self.mix.replay is not None):
            return list(self.mix.languages)
        return list(self.tokenizer.languages) if self.tokenizer.mode == "extend" else []

    @model_validator(mode="after")
    def _sections_agree(self) -> Recipe:
        """Facts that span sections: a valid architecture, the tokenizer's vocabulary, the packed context fits the
        model's positions, and every training batch is a whole number of packed sequences."""
        self.model.check_architecture()
        if self.evaluate is not None and "base" in self.evaluate.models and not self.model.init_from:
            raise ValueError("evaluate.models: `base` is the model that model.init_from names; this recipe has none")
        if self.model.init_from and not self.tokenizer.base:
            raise ValueError("model.init_from needs tokenizer.base, the base model's tokenizer: its embeddings are "
                             "rows of that vocabulary")
        vocabulary, overridden = self.tokenizer.layout().size, self.model.overrides.get("vocab_size")
        if overridden is not None and overridden != vocabulary:
            raise ValueError(f"model.overrides.vocab_size {overridden} contradicts the tokenizer's layout, "
                             f"{vocabulary} ids (tokenizer.vocab_size + chat tokens, padded to "
                             f"tokenizer.pad_to_multiple_of): the tokenizer owns the vocabulary; drop the override")
        context, positions = self.mix.context_length, self.model.max_positions()
        if positions is not None and context > positions:
            raise ValueError(f"mix.context_length {context} is longer than the model's max_position_embeddings "
                             f"{positions}; lower it or set model.overrides.max_position_embeddings")
        for step in self.pretrain.batch:
            if step.batch_tokens % context:
                raise ValueError(f"pretrain.batch: batch_tokens {step.batch_tokens} is not a multiple of "
                                 f"mix.context_length {context}")
        return self


# ----------------------------------------------------------------------------------------------------------------
# Loading


def embedded_recipes() -> list[str]:
    folder = resources.files("fuxitranyu") / "recipes"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_source(source: str | Path) -> tuple[str, str]:
    """(text, label) of a recipe given as a file path or as the name of an embedded recipe."""
    path = Path(source)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as err:
            raise RecipeError(f"not UTF-8 text: {err}", path=path) from err
    if str(source) in embedded_recipes():
        resource = resources.files("fuxitranyu") / "recipes" / f"{source}.yaml"
        return resource.read_text(encoding="utf-8"), f"recipes/{source}.yaml"
    raise RecipeError(f"no recipe file {str(source)!r} and no embedded recipe of that name; "
                      f"embedded: {', '.join(embedded_recipes())}")


def parse_override(override: str) -> tuple[list[str], Any]:
    key, sep, value = override.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise RecipeError(f"override {override!r} must look like section.key=value, e.g. pretrain.max_lr=1e-4")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        where = _yaml_position(err)
        raise RecipeError(f"override {override!r}: value is not valid YAML: {_yaml_problem(err)}"
                          f"{f' (line:column {where} of the value)' if where else ''}") from None
    return key.strip().split("."), parsed


def _yaml_position(error: yaml.YAMLError) -> str | None:
    """`line:column` (1-based) where PyYAML found the problem."""
    mark = getattr(error, "problem_mark", None)
    return f"{mark.line + 1}:{mark.column + 1}" if mark is not None else None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's problem in one line, without its quotes of `<unicode string>` positions."""
    parts = [getattr(error, "context", None), getattr(error, "problem", None)]
    return "; ".join(str(part) for part in parts if part) or str(error).splitlines()[0]


def _apply_override(raw: dict, keys: list[str], value: Any, override: str) -> None:
    node: Any = raw
    for depth, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise RecipeError(f"override {override!r}: {'.'.join(keys[:depth])} has no item {key}")
            node = node[int(key)]
            continue
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, (dict, list)):
            raise RecipeError(f"override {override!r}: {'.'.join(keys[:depth + 1])} is a value, not a section")
        node = child
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise RecipeError(f"override {override!r}: {'.'.join(keys[:-1])} has no item {last}")
        node[int(last)] = value
    else:
        node[last] = value


def _describe(error: dict, label: str, overrides: list[str]) -> str:
    location = [str(part) for part in error["loc"]]
    key = ".".join(location)
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")

    def related(override: str) -> bool:
        set_key = override.split("=", 1)[0].strip()
        if not key:  # a check across sections names its keys in the message
            return set_key in message or any(set_key.startswith(k) for k in _dotted_keys(message))
        return set_key == key or set_key.startswith(key + ".") or key.startswith(set_key + ".")

    culprits = [o for o in overrides if related(o)]
    origin = f" (from {', '.join(f'--set {o}' for o in culprits)})" if culprits else ""
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        section = _section_model(location[:-1])
        known = list(section.model_fields) if section is not None else []
        close = difflib.get_close_matches(location[-1], known, n=1)
        hint = f"; did you mean {'.'.join(location[:-1] + close)}?" if close else ""
        return f"{label}: unknown key '{key}'{origin}{hint} (known here: {', '.join(known)})"
    if not key:
        return f"{label}: {message}{origin}"
    shown = "" if isinstance(value, dict) or repr(value) in message else f" (got {value!r})"
    return f"{label}: key '{key}'{origin}: {message}{shown}"


def _dotted_keys(message: str) -> list[str]:
    return re.findall(r"\b[a-z_]+\.[a-z_.]+\b", message)


def _section_model(path: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Recipe
    for part in path:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidate = inner[0] if inner else annotation
        if not (isinstance(candidate, type) and issubclass(candidate, BaseModel)):
            return None
        model = candidate
    return model


def load_recipe(source: str | Path = "tiny", overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe (a path, or the name of an embedded recipe), apply `section.key=value` overrides, validate."""
    text, label = _read_source(source)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"not valid YAML: {_yaml_problem(err)}", path=label, record=_yaml_position(err)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{label}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    for override in overrides:
        keys, value = parse_override(override)
        _apply_override(raw, keys, value, override)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        lines = [_describe(e, label, list(overrides)) for e in err.errors()]
        raise RecipeError("\n".join(lines)) from None


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _optional_section(annotation: Any) -> type[BaseModel] | None:
    """The section model of `Section` or `Section | None` (an optional section, e.g. `analyze`), else None."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    candidates = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    if len(candidates) == 1 and isinstance(candidates[0], type) and issubclass(candidates[0], BaseModel):
        return candidates[0]
    return None


def field_docs(model: type[BaseModel] = Recipe, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every field, nested sections flattened."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        section = _optional_section(annotation)
        if section is not None:
            if field.description and section is not annotation:
                rows.append((key, f"{section.__name__} | None", json.dumps(to_jsonable_python(field.default)),
                             field.description))
            rows.extend(field_docs(section, key + "."))
            continue
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        default = "(required)" if field.is_required() else json.dumps(to_jsonable_python(field.default))
        rows.append((key, type_name, default, field.description or ""))
        items = getattr(annotation, "__args__", ()) if getattr(annotation, "__origin__", None) is list else ()
        if items and _optional_section(items[0]) is not None:  # a list of sections: document one item's keys
            rows.extend(field_docs(items[0], key + "[]."))
    return rows
