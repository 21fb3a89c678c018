"""The `report` stage: `report.html` (self-contained: figures embedded), `report.md` with `figures/*.png`, built only
from the artifacts of the stages the recipe ran."""

from __future__ import annotations

from typing import Any

from fuxitranyu.report.chapters import stage_chapters
from fuxitranyu.report.document import write_report
from fuxitranyu.stage import Stage, StageContext

REPORTED = ("data", "tokenizer", "model", "mix", "pretrain", "sft", "dpo", "evaluate", "analyze")


def run_report_stage(ctx: StageContext) -> dict[str, Any]:
    section = ctx.recipe.report
    chapters = stage_chapters(ctx.recipe, ctx.inputs, section)
    counts = write_report(ctx.out_dir, section.title or f"FuxiTranyu run: {ctx.recipe.name}", chapters)
    ctx.console.print(f"  report.html and report.md: {counts['sections']} sections, {counts['figures']} figures")
    return {**counts, "stages": [name for name in REPORTED if name in ctx.inputs]}


def _reads_every_stage(recipe) -> tuple[str, ...]:
    """Every stage of the recipe before the report (those it leaves out are not read)."""
    return tuple(name for name in REPORTED if getattr(recipe, name, True) is not None)


STAGE = Stage("report", sections=("report",), needs=_reads_every_stage, run=run_report_stage,
              description="one HTML page (and a Markdown twin) with the tables and figures of every stage",
              enabled=lambda r: r.report is not None)
