"""A report as blocks of text, tables and figures, written both as a self-contained HTML page (figures embedded) and
as Markdown beside PNG files. Hand-written because the page needs nothing a template engine adds."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from fuxitranyu.io import atomic_write_text
from fuxitranyu.report.artifacts import FIGURES, REPORT


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    name: str
    """File name of the PNG (`figures/<name>`)."""
    png: bytes
    caption: str = ""


@dataclass
class Chapter:
    title: str
    blocks: list[Text | Table | Figure] = field(default_factory=list)


STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.8em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.2em; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f4f4f4; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption, caption { color: #555; font-size: 13px; }
nav a { margin-right: 1em; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 12px; }
"""


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def render_html(title: str, chapters: list[Chapter]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><nav>"]
    parts += [f"<a href='#{_anchor(s.title)}'>{html.escape(s.title)}</a>" for s in chapters]
    parts.append("</nav>")
    for chapter in chapters:
        parts.append(f"<h2 id='{_anchor(chapter.title)}'>{html.escape(chapter.title)}</h2>")
        for block in chapter.blocks:
            if isinstance(block, Text):
                paragraphs = block.text.split("\n\n")
                parts += [f"<pre>{html.escape(p[4:])}</pre>" if p.startswith("    ") else
                          f"<p>{html.escape(p)}</p>" for p in paragraphs]
            elif isinstance(block, Table):
                caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
                body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                               for row in block.rows)
                parts.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                data = base64.b64encode(block.png).decode()
                parts.append(f"<figure><img alt='{html.escape(block.caption or block.name)}' "
                             f"src='data:image/png;base64,{data}'><figcaption>{html.escape(block.caption)}"
                             f"</figcaption></figure>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, chapters: list[Chapter]) -> str:
    lines = [f"# {title}", ""]
    for chapter in chapters:
        lines += [f"## {chapter.title}", ""]
        for block in chapter.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [f"*{block.caption}*", ""]
                lines.append("| " + " | ".join(_cell(h) for h in block.header) + " |")
                lines.append("|" + "---|" * len(block.header))
                lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
            else:
                lines += [f"![{block.caption or block.name}]({FIGURES}/{block.name})", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, title: str, chapters: list[Chapter], name: str = REPORT) -> dict[str, int]:
    """`<name>.html` (figures embedded), `<name>.md` and figures/*.png; returns counts for the manifest."""
    figures = [block for chapter in chapters for block in chapter.blocks if isinstance(block, Figure)]
    (out_dir / FIGURES).mkdir(parents=True, exist_ok=True)
    for figure in figures:
        (out_dir / FIGURES / figure.name).write_bytes(figure.png)
    atomic_write_text(out_dir / f"{name}.html", render_html(title, chapters))
    atomic_write_text(out_dir / f"{name}.md", render_markdown(title, chapters))
    return {"sections": len(chapters), "figures": len(figures),
            "tables": sum(isinstance(b, Table) for s in chapters for b in s.blocks)}
