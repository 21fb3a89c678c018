"""The base of every recipe section: unknown keys are errors, and the docstring under a field is its documentation."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)
