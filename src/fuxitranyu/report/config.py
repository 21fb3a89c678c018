"""The `report` section of a recipe."""

from __future__ import annotations

from pydantic import Field

from fuxitranyu.config_base import Section


class ReportSection(Section):
    title: str | None = None
    """Title of the page (default: the recipe's name)."""
    smoothing_window: int = Field(10, ge=1)
    """Per-language training losses are averaged over this many logged steps before they are drawn."""
    max_languages: int = Field(12, ge=1)
    """Per-language curves drawn at most (the largest languages of the mix; tables list them all)."""
