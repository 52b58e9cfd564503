"""One self-contained HTML page of a run: report.md rendered, every figure it shows embedded as a data URI.

`fooled show RUN_DIR` writes RUN_DIR/report.html, which can be mailed or attached as a single file.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

from ..errors import FooledError
from ..rundir import atomic_write_text

# A cell holding a number, an interval or a count ("97.5 [96.0, 98.9]", "3/3"), kept on one line.
_NUMBER_CELL = re.compile(r"<td>([-+0-9.,%/\[\]() ]+|-)</td>")

# `src="..."` of an <img> that points at a file beside the report (not at a URL or an embedded image).
_LOCAL_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")(?![a-zA-Z][a-zA-Z0-9+.-]*:|/|#)([^"]+)(")')

CSS = """
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; max-width: 64rem; margin: 2rem auto; padding: 0 1.25rem; }
h1, h2, h3 { line-height: 1.25; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3em; margin-top: 2em; }
code { font: .875em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6; padding: .1em .3em; border-radius: 4px; }
img { max-width: 100%; height: auto; display: block; margin: 1rem auto; }
nav.toc { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem 1rem; }
nav.toc ul { margin: .25rem 0; padding-left: 1.25rem; }
.table-wrap { overflow: auto; max-height: 80vh; margin: 1rem 0; border: 1px solid #d0d7de; border-radius: 6px; }
table { border-collapse: collapse; font-size: .875rem; min-width: 100%; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid #e5e7eb; text-align: left; vertical-align: top; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
thead th { position: sticky; top: 0; background: #eef1f4; cursor: pointer; user-select: none; white-space: nowrap; }
thead th[data-order="asc"]::after { content: " \\25B2"; } thead th[data-order="desc"]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #f6f8fa; } tbody tr:hover { background: #fff8c5; }
"""

# Click a header to sort by that column (numbers by value, the rest as text); click again to reverse.
SORT_JS = """
document.querySelectorAll("table").forEach(t => t.querySelectorAll("thead th").forEach((th, i) => th.addEventListener("click", () => {
  const asc = th.dataset.order !== "asc", body = t.tBodies[0], num = parseFloat;  // "97.5 [96.0, 98.9]" -> 97.5
  const key = r => r.cells[i] ? r.cells[i].textContent.trim() : "";
  const rows = [...body.rows].sort((a, b) => { const x = key(a), y = key(b), p = num(x), q = num(y);
    const c = isNaN(p) || isNaN(q) ? x.localeCompare(y) : p - q; return asc ? c : -c; });
  t.querySelectorAll("thead th").forEach(h => delete h.dataset.order); th.dataset.order = asc ? "asc" : "desc";
  rows.forEach(r => body.appendChild(r)); })));
"""


def data_uri(path: Path) -> str:
    """The file at `path` as a base64 data URI."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def embed_images(body: str, base: Path) -> str:
    """Replace every local <img src> in `body` by the file's data URI; a missing file is a FooledError."""
    def embed(m: re.Match) -> str:
        path = base / html.unescape(m.group(2))
        if not path.is_file():
            raise FooledError(f"report.md shows {m.group(2)}, which is missing from {base}; redraw it with `fooled figures {base}`")
        return m.group(1) + data_uri(path) + m.group(3)

    return _LOCAL_SRC.sub(embed, body)


def render_html(text: str, base: Path, title: str = "fooled report") -> str:
    """The markdown `text` as a standalone page; images are read relative to `base`."""
    import markdown

    md = markdown.Markdown(extensions=["tables", "toc"], output_format="html")
    body = embed_images(md.convert(text), base)
    body = body.replace("<table>", '<div class="table-wrap"><table>').replace("</table>", "</table></div>")
    body = _NUMBER_CELL.sub(r'<td class="num">\1</td>', body)
    heading = re.search(r"<h1[^>]*>(.*?)</h1>", body, re.S)
    title = re.sub(r"<[^>]+>", "", heading.group(1)).strip() if heading else title
    toc = f'<nav class="toc"><details><summary>Contents</summary>{md.toc}</details></nav>' if md.toc_tokens else ""
    if heading and toc:  # the contents go under the title, not above it
        body = body[:heading.end()] + "\n" + toc + body[heading.end():]
    elif toc:
        body = toc + body
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(html.unescape(title))}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n{body}\n<script>{SORT_JS}</script>\n</body>\n</html>\n")


def write_html(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html from RUN_DIR/report.md and the figures it shows; returns its path."""
    run_dir = Path(run_dir)
    source = run_dir / "report.md"
    if not source.is_file():
        raise FooledError(f"no report.md in {run_dir}; write it with `fooled report {run_dir}`")
    path = run_dir / "report.html"
    atomic_write_text(path, render_html(source.read_text(encoding="utf-8"), run_dir, title=f"fooled: {run_dir.name}"))
    return path
