"""The report page as a list of blocks, rendered twice: a self-contained HTML file and Markdown beside it.

HTML embeds every figure as a base64 PNG and uses only inline CSS, so the file opens offline anywhere.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;max-width:1180px;
margin:0 auto;padding:18px 22px 60px}
h1{font-size:22px;margin:6px 0 2px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd;
padding-bottom:3px}h3{font-size:15px;margin:16px 0 4px}
p{margin:6px 0}.muted{color:#666;font-size:12.5px}
.warn{background:#fff4e5;border:1px solid #f0b45a;border-radius:4px;padding:8px 12px;margin:10px 0}
.warn ul{margin:4px 0 0 18px;padding:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px}
th,td{border-bottom:1px solid #e4e4e4;padding:3px 9px;text-align:right;white-space:nowrap}
th{background:#f5f5f5;font-weight:600}td.l,th.l{text-align:left}
tr:hover td{background:#fafafa}
figure{margin:10px 0 18px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:12.5px;margin-top:3px}
nav a{margin-right:12px;font-size:13px}
"""


@dataclass
class Table:
    """A table of strings; ``left`` columns are left-aligned, ``bold`` cells are (row, column) pairs."""

    columns: list[str]
    rows: list[list[str]]
    left: int = 0
    bold: set[tuple[int, int]] = field(default_factory=set)


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Block:
    """One piece of the page: kind is h1, h2, h3, p, note, warn (text and a list), table or figure."""

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    table: Table | None = None
    figure: Figure | None = None


def _html_table(table: Table) -> str:
    def cell(tag: str, j: int, value: str, bold: bool = False) -> str:
        cls = ' class="l"' if j < table.left else ""
        value = html.escape(value)
        return f"<{tag}{cls}>{'<b>' + value + '</b>' if bold else value}</{tag}>"

    head = "".join(cell("th", j, c) for j, c in enumerate(table.columns))
    body = "".join("<tr>" + "".join(cell("td", j, v, (i, j) in table.bold) for j, v in enumerate(row)) + "</tr>"
                   for i, row in enumerate(table.rows))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _anchor(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def render_html(blocks: list[Block], title: str) -> str:
    """The whole page; every figure is read from disk and inlined as ``data:image/png;base64``."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"]
    sections = [b.text for b in blocks if b.kind == "h2"]
    nav = "<nav>" + "".join(f'<a href="#{_anchor(s)}">{html.escape(s)}</a>' for s in sections) + "</nav>"
    for block in blocks:
        text = html.escape(block.text)
        if block.kind == "h1":
            parts.append(f"<h1>{text}</h1>")
        elif block.kind == "h2":
            parts.append(f'<h2 id="{_anchor(block.text)}">{text}</h2>')
        elif block.kind == "h3":
            parts.append(f"<h3>{text}</h3>")
        elif block.kind == "p":
            parts.append(f"<p>{text}</p>")
        elif block.kind == "note":
            parts.append(f'<p class="muted">{text}</p>')
        elif block.kind == "nav":
            parts.append(nav)
        elif block.kind == "warn":
            items = "".join(f"<li>{html.escape(i)}</li>" for i in block.items)
            parts.append(f'<div class="warn"><b>{text}</b><ul>{items}</ul></div>')
        elif block.kind == "table" and block.table is not None:
            parts.append(_html_table(block.table))
        elif block.kind == "figure" and block.figure is not None:
            data = base64.b64encode(block.figure.path.read_bytes()).decode("ascii")
            caption = html.escape(block.figure.caption)
            parts.append(f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{caption}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_escape(value: str) -> str:
    return value.replace("|", "\\|")


def render_markdown(blocks: list[Block], base: Path) -> str:
    """The same page in Markdown; figures are linked relative to ``base`` (the report's directory)."""
    lines: list[str] = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            lines += ["#" * int(block.kind[1]) + " " + block.text, ""]
        elif block.kind == "p":
            lines += [block.text, ""]
        elif block.kind == "note":
            lines += [f"*{block.text}*", ""]
        elif block.kind == "warn":
            lines += [f"> **{block.text}**", ">"] + [f"> - {i}" for i in block.items] + [""]
        elif block.kind == "table" and block.table is not None:
            table = block.table
            lines.append("| " + " | ".join(_md_escape(c) for c in table.columns) + " |")
            lines.append("|" + "|".join(":--" if j < table.left else "--:" for j in range(len(table.columns))) + "|")
            for i, row in enumerate(table.rows):
                cells = [f"**{_md_escape(v)}**" if (i, j) in table.bold and v else _md_escape(v)
                         for j, v in enumerate(row)]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        elif block.kind == "figure" and block.figure is not None:
            relative = block.figure.path.relative_to(base).as_posix()
            lines += [f"![{block.figure.caption}]({relative})", "", f"*{block.figure.caption}*", ""]
    return "\n".join(lines)
