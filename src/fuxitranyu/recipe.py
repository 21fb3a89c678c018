"""Recipes: YAML files validated into typed config objects, with dotted command-line overrides.

Each field is documented once, here, by the docstring under it; `fuxitranyu recipe docs` prints them. A recipe names
the file it came from in every error, and an override names the `--set` that caused it.
"""

from __future__ import annotations

import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from huggingface_hub.errors import StrictDataclassError
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python

from fuxitranyu.config_base import Count, Section
from fuxitranyu.data.config import DataRecipe
from fuxitranyu.errors import FuxiError, RecipeError
from fuxitranyu.mix.config import MixRecipe
from fuxitranyu.model.configuration import FuxiTranyuConfig
from fuxitranyu.model.presets import preset_fields, preset_names
from fuxitranyu.pretrain.config import PretrainRecipe


class ModelRecipe(Section):
    preset: str = "tiny"
    """Named size, one of the files in fuxitranyu/model/presets: tiny, small, fuxitranyu-8b."""
    overrides: dict[str, Any] = {}
    """FuxiTranyuConfig fields set on top of the preset, e.g. {num_hidden_layers: 2, vocab_size: 16384}."""

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        if name not in preset_names():
            raise ValueError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
        return name

    @model_validator(mode="after")
    def _valid_architecture(self) -> ModelRecipe:
        known = set(FuxiTranyuConfig.__dataclass_fields__)
        for name in sorted(set(self.overrides) - known):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"overrides.{name} is not a FuxiTranyuConfig field{hint}")
        try:
            self.to_config()
        except (ValueError, TypeError, StrictDataclassError) as err:
            raise ValueError(f"invalid model: {err.__cause__ or err}") from err
        return self

    def to_config(self) -> FuxiTranyuConfig:
        return FuxiTranyuConfig(**{**preset_fields(self.preset), **self.overrides})


class TokenizerRecipe(Section):
    vocab_size: Count = Field(32_000, gt=0)
    """Vocabulary learned by BPE, <|endoftext|> (id 0) and the 256 byte tokens included, before the ChatML tokens
    and the padding (paper 3.3: 250,680). At least 257."""
    pad_to_multiple_of: int = Field(128, gt=0)
    """Dummy tokens are appended until the vocabulary is a multiple of this (paper Table 4: 128)."""
    max_documents_per_language: Count = Field(1_000_000, gt=0)
    """Training sample: at most this many documents per language (paper 3.3: 1M; all of a smaller language)."""
    sampling: Literal["balanced", "proportional"] = "balanced"
    """How the sample is drawn: `balanced` takes min(max_documents_per_language, available) documents of every
    language (paper 3.3); `proportional` draws the same total, shared by the languages' shares of the corpus."""
    split_digits: bool = False
    """Split numbers into single digits. The paper does not (3.3)."""
    marks_with_letters: bool = False
    """Pre-tokenize with GPT-2's regex but count combining marks (Indic vowel signs and viramas, Thai, Khmer, Myanmar
    marks) as letters. GPT-2's own regex (the paper's, False) cuts words of those scripts at every mark, so that
    tokens per word in ta, bn and hi about double (benchmarks/RESULTS.md)."""
    chat_tokens: bool = True
    """Add ChatML `<|im_start|>` / `<|im_end|>` right after the learned vocabulary (released ids 250680, 250681)."""
    inputs: list[str] = []
    """Train on these instead of the data stage's `clean/` documents: JSONL files (.jsonl, .jsonl.gz, .jsonl.zst)
    with `text` and `language` (or `metadata.language`) fields, folders of them, or folders of .txt files (one
    document each); a file inside a folder named by a language label (`fr/`, `code-python/`) needs no language field."""
    languages: list[str] = []
    """Train on these language labels only; each must have documents. Empty: every language of the inputs."""

    @field_validator("vocab_size")
    @classmethod
    def _holds_byte_alphabet(cls, value: int) -> int:
        from fuxitranyu.tokenizer.train import vocab_size_problem

        problem = vocab_size_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        from fuxitranyu.languages import UnknownLanguageError, label

        try:
            return list(dict.fromkeys(label(name) for name in value))
        except UnknownLanguageError as err:
            raise ValueError(err.message) from None


class Recipe(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Run name; outputs go to output_dir."""
    seed: int = 1234
    """One seed for every random choice of every stage."""
    output_dir: Path | None = None
    """Where the stages write their directories (default: runs/<name>)."""
    data: DataRecipe = DataRecipe()
    model: ModelRecipe = ModelRecipe()
    tokenizer: TokenizerRecipe = TokenizerRecipe()
    mix: MixRecipe = MixRecipe()
    pretrain: PretrainRecipe = PretrainRecipe()

    @property
    def run_dir(self) -> Path:
        return self.output_dir if self.output_dir is not None else Path("runs") / self.name


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
        raise RecipeError(f"override {override!r}: value is not valid YAML: {err}") from err
    return key.strip().split("."), parsed


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
    def related(override: str) -> bool:
        set_key = override.split("=", 1)[0].strip()
        return set_key == key or set_key.startswith(key + ".") or key.startswith(set_key + ".")

    culprits = [o for o in overrides if related(o)]
    origin = f" (from {', '.join(f'--set {o}' for o in culprits)})" if culprits else ""
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        section = _section_model(location[:-1])
        known = list(getattr(section, "model_fields", None) or getattr(section, "__dataclass_fields__", {}))
        close = difflib.get_close_matches(location[-1], known, n=1)
        hint = f"; did you mean {'.'.join(location[:-1] + close)}?" if close else ""
        return f"{label}: unknown key '{key}'{origin}{hint} (known here: {', '.join(known)})"
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    shown = "" if isinstance(value, dict) or repr(value) in message else f" (got {value!r})"
    return f"{label}: key '{key or '<top level>'}'{origin}: {message}{shown}"


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
        if isinstance(candidate, type) and hasattr(candidate, "__dataclass_fields__"):
            return candidate  # a plain dataclass (e.g. MinHashConfig) is a leaf section
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
        raise RecipeError(f"{label}: not valid YAML: {err}") from err
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
    except FuxiError as err:  # raised by a plain-dataclass section's own checks
        raise RecipeError(f"{label}: {err}") from None


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def field_docs(model: type[BaseModel] = Recipe, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every field, nested sections flattened."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(field_docs(annotation, key + "."))
            continue
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        default = "(required)" if field.is_required() else json.dumps(to_jsonable_python(field.default))
        rows.append((key, type_name, default, field.description or ""))
    return rows
