"""The audit's report as one document rendered twice — Markdown (``report.md``) and a self-contained HTML page
(``report.html``, its pictures embedded) — so the two never say different things.

A document is a title and :class:`Section` s; a section holds paragraphs (``**bold**`` and ```code``` marked as in
Markdown), an optional :class:`Table` (with an optional thumbnail per row, shown in HTML) and an optional picture.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Section", "Table", "to_html", "to_markdown"]


@dataclass
class Table:
    """A table: a header and rows of cells (text), and per row an optional local image file for HTML."""

    header: list[str]
    rows: list[list[str]]
    thumbnails: list[Path | None] = field(default_factory=list)


@dataclass
class Section:
    """One section: a title, paragraphs, a table, a picture (a file beside the report, and its caption), and
    paragraphs after the table."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: Table | None = None
    picture: tuple[str, str] | None = None
    after: list[str] = field(default_factory=list)


def to_markdown(title: str, sections: list[Section]) -> str:
    """The document as Markdown (thumbnails are left out: the table keeps the file's name)."""
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""] if s.title else []
        out += [p + "\n" for p in s.paragraphs]
        if s.picture:
            out += [f"![{s.picture[1]}]({s.picture[0]})", ""]
        if s.table:
            out += ["| " + " | ".join(s.table.header) + " |", "|" + "---|" * len(s.table.header)]
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in s.table.rows]
            out.append("")
        out += [p + "\n" for p in s.after]
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escaped text with **bold** and `code` as HTML."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _data_uri(path: Path, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _thumbnail(path: Path | None, size: int = 64) -> str:
    """An ``<img>`` of a local image shrunk to ``size`` pixels, embedded; "" when there is none or it is no image."""
    if path is None:
        return ""
    try:
        import io

        from PIL import Image

        with Image.open(path) as im:
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG")
    except (OSError, ValueError):
        return ""
    return f'<img class="thumb" alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111;
line-height:1.45}table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;
padding:.2rem .45rem;text-align:left;vertical-align:middle}th{background:#f2f2f2}code{font-size:.85em}
img.figure{max-width:100%;width:34rem}img.thumb{display:block;max-width:64px;max-height:64px}
.verdict{font-size:1.1rem;border-left:4px solid #c0392b;padding:.3rem .8rem;background:#fbf3f2}"""


def to_html(title: str, sections: list[Section], folder: Path) -> str:
    """The document as one self-contained HTML page: pictures from ``folder`` and row thumbnails embedded."""
    out = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
           f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for k, s in enumerate(sections):
        if s.title:
            out.append(f"<h2>{html.escape(s.title)}</h2>")
        cls = ' class="verdict"' if k == 0 else ""
        out += [f"<p{cls}>{_inline(p)}</p>" for p in s.paragraphs]
        if s.picture and (folder / s.picture[0]).is_file():
            out.append(f'<figure><img class="figure" alt="{html.escape(s.picture[1])}" '
                       f'src="{_data_uri(folder / s.picture[0])}"><figcaption>{_inline(s.picture[1])}'
                       "</figcaption></figure>")
        if s.table:
            thumbs = s.table.thumbnails and any(s.table.thumbnails)
            head = ([""] if thumbs else []) + s.table.header
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
            for i, row in enumerate(s.table.rows):
                cells = ([_thumbnail(s.table.thumbnails[i])] if thumbs else []) + [_inline(c) for c in row]
                out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            out.append("</table>")
        out += [f"<p>{_inline(p)}</p>" for p in s.after]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
