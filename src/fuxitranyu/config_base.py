"""The base of every recipe section: unknown keys are errors, and the docstring under a field is its documentation."""

import re
import typing
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator


def _number_types(annotation: Any) -> set[type]:
    """The plain number types an annotation admits (int, float), looking inside Optional/Union/Annotated."""
    if annotation in (int, float):
        return {annotation}
    return {t for arg in typing.get_args(annotation) for t in _number_types(arg)}


def _admits_bool(annotation: Any) -> bool:
    return annotation is bool or any(_admits_bool(arg) for arg in typing.get_args(annotation))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic reads `true` as 1 for a number; in a recipe that is always a mistake (`--set x.tokens=true`)."""
        if isinstance(value, bool) and info.field_name in cls.model_fields:
            annotation = cls.model_fields[info.field_name].annotation
            if _number_types(annotation) and not _admits_bool(annotation):
                raise ValueError("expected a number, not a boolean")
        return value


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
_COUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+)?)\s*(Ki|Mi|Gi|K|M|B|G|T|)\s*$")


def parse_count(value: Any) -> Any:
    """Token counts may be written `606B`, `2Mi` (= 2,097,152), `1.5e9` or `606_000_000_000`."""
    if isinstance(value, bool):
        raise ValueError("expected a count such as 4096, 2Mi, 606B or 1.5e9, not a boolean")
    if isinstance(value, str):
        match = _COUNT.match(value.replace("_", ""))
        if not match:
            raise ValueError(f"expected a count such as 4096, 2Mi, 606B or 1.5e9, got {value!r}")
        value = float(match[1]) * _UNITS[match[2]]
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected a whole number, got {value}")
        value = int(value)
    return value


Count = Annotated[int, BeforeValidator(parse_count), Field(ge=0)]


def canonical_label(name: str, field: str) -> str:
    """`name` if it is a language label as artifacts write it (`zh`, `code-python`); a ValueError naming `field`
    otherwise (pydantic turns it into a recipe error that names the key)."""
    from fuxitranyu.languages import UnknownLanguageError, label

    try:
        canonical = label(name)
    except UnknownLanguageError as err:
        raise ValueError(err.message) from None
    if canonical != name:
        raise ValueError(f"{field}: write {name!r} as its label {canonical!r}")
    return name


def language_labels(codes: list[str], keep_unsupported: bool = False) -> list[str]:
    """Labels in the order given, aliases resolved (`zh_CN` -> `zh`, `fil` -> `tl`); a code listed twice, or one that
    is none of the supported languages, is an error naming it. `keep_unsupported` keeps such a code as written
    instead (the analyses compare any languages of a parallel set, FLORES codes such as `slk_Latn` included)."""
    from fuxitranyu.languages import UnknownLanguageError, label

    labels = []
    for code in codes:
        try:
            labels.append(label(code))
        except UnknownLanguageError as err:
            if not keep_unsupported:
                raise ValueError(err.message) from None
            if not code.strip() or code != code.strip():
                raise ValueError(f"{code!r} is not a language code") from None
            labels.append(code)
    repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} listed twice")
    return labels


LanguageList = Annotated[list[str], AfterValidator(language_labels)]
"""Supported languages, by label, aliases resolved; an empty list means every language (one spelling of "all")."""
AnyLanguageList = Annotated[list[str], AfterValidator(lambda codes: language_labels(codes, keep_unsupported=True))]
"""As LanguageList, but a code outside the supported languages is kept as written (the analyses)."""
PrecisionChoice = Literal["auto", "fp32", "bf16", "fp16"]
"""A stage's compute precision: `auto` decides from the hardware (`fuxitranyu.runtime.choose_precision`)."""


def _betas_in_range(betas: tuple[float, float]) -> tuple[float, float]:
    if not all(0 <= b < 1 for b in betas):
        raise ValueError(f"each beta must be in [0, 1), got {list(betas)}")
    return betas


AdamBetas = Annotated[tuple[float, float], AfterValidator(_betas_in_range)]
"""AdamW's β1, β2, each in [0, 1): pretraining's and post-training's (their defaults differ: the paper's 3.5 and
TRL's)."""
