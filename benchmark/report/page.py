"""The report page as a list of blocks, rendered twice: a self-contained HTML file and Markdown beside it.

HTML embeds every figure as a base64 PNG and uses only inline CSS and one inline script (the galleries' entry
picker), so the file opens offline anywhere; without scripts every tile of a gallery shows.
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
padding-bottom:3px}h3{font-size:15px;margin:16px 0 4px}h4{font-size:14px;margin:12px 0 4px}
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
.picker{font-size:12.5px;margin:4px 0 6px;line-height:1.9}.picker label{margin-right:10px;white-space:nowrap}
.picker button{font-size:12px;margin-right:6px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:6px 10px;align-items:start}
.tiles figure{margin:0}.tiles img{max-width:100%;border:0}
"""
#: the galleries' picker: a checkbox per entry shows or hides its tile; "best N" keeps the first N (the ranking)
SCRIPT = """
document.querySelectorAll('.gallery').forEach(function (g) {
  var boxes = Array.prototype.slice.call(g.querySelectorAll('.picker input'));
  function show() {
    var on = {};
    boxes.forEach(function (b) { on[b.value] = b.checked; });
    g.querySelectorAll('figure[data-entry]').forEach(function (t) { t.hidden = !on[t.dataset.entry]; });
  }
  g.querySelectorAll('.picker button').forEach(function (button) {
    button.addEventListener('click', function () {
      var n = Number(button.dataset.best);
      boxes.forEach(function (b, i) { b.checked = i < n; });
      show();
    });
  });
  boxes.forEach(function (b) { b.addEventListener('change', show); });
});
"""
BEST = 6  # the picker's "best N" button


@dataclass
class Table:
    """A table of strings; ``left`` columns are left-aligned, ``bold`` cells are (row, column) pairs."""

    columns: list[str]
    rows: list[list[str]]
    left: int = 0
    bold: set[tuple[int, int]] = field(default_factory=set)


@dataclass
class Figure:
    """A PNG and its caption; in a gallery, ``entry`` names the method a tile shows (None: always shown)."""

    path: Path
    caption: str
    entry: str | None = None


@dataclass
class Block:
    """One piece of the page: kind is h1, h2, h3, h4, p, note, warn (text and a list), table, figure, or gallery (tiles
    in a grid with a picker of their entries; ``text`` heads it)."""

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    table: Table | None = None
    figure: Figure | None = None
    tiles: list[Figure] = field(default_factory=list)


def _html_table(table: Table) -> str:
    def cell(tag: str, j: int, value: str, bold: bool = False) -> str:
        cls = ' class="l"' if j < table.left else ""
        value = html.escape(value)
        return f"<{tag}{cls}>{'<b>' + value + '</b>' if bold else value}</{tag}>"

    head = "".join(cell("th", j, c) for j, c in enumerate(table.columns))
    body = "".join("<tr>" + "".join(cell("td", j, v, (i, j) in table.bold) for j, v in enumerate(row)) + "</tr>"
                   for i, row in enumerate(table.rows))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _img(figure: Figure) -> str:
    data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(figure.caption)}" src="data:image/png;base64,{data}">'


def _html_gallery(block: Block) -> str:
    """The tiles in a grid; above them a checkbox per entry (all ticked), and buttons: all, best N, none."""
    entries = [tile.entry for tile in block.tiles if tile.entry is not None]
    buttons = [("all", len(entries)), *([(f"best {BEST}", BEST)] if len(entries) > BEST else []), ("none", 0)]
    picker = "".join(f'<button type="button" data-best="{n}">{name}</button>' for name, n in buttons)
    picker += "".join(f'<label><input type="checkbox" checked value="{html.escape(e)}"> {html.escape(e)}</label>'
                      for e in entries)
    tiles = "".join(("<figure>" if t.entry is None else f'<figure data-entry="{html.escape(t.entry)}">')
                    + _img(t) + "</figure>" for t in block.tiles)
    return (f'<figure class="gallery"><figcaption>{html.escape(block.text)}</figcaption>'
            f'<div class="picker">show: {picker}</div><div class="tiles">{tiles}</div></figure>')


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
        elif block.kind in ("h3", "h4"):
            parts.append(f"<{block.kind}>{text}</{block.kind}>")
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
            parts.append(f"<figure>{_img(block.figure)}<figcaption>{html.escape(block.figure.caption)}"
                         "</figcaption></figure>")
        elif block.kind == "gallery":
            parts.append(_html_gallery(block))
    if any(block.kind == "gallery" for block in blocks):
        parts.append(f"<script>{SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_escape(value: str) -> str:
    return value.replace("|", "\\|")


def render_markdown(blocks: list[Block], base: Path) -> str:
    """The same page in Markdown; figures are linked relative to ``base`` (the report's directory)."""
    lines: list[str] = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3", "h4"):
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
        elif block.kind == "gallery":
            lines += [f"*{block.text}*", ""]
            lines += [f"![{tile.caption}]({tile.path.relative_to(base).as_posix()})" for tile in block.tiles] + [""]
    return "\n".join(lines)
