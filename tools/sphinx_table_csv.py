"""Long result tables get a CSV download and a scrolling box (a local Sphinx extension, build time only).

The book's result tables are HTML written by the executed notebooks (``DataFrame.to_html`` or
``display(df)``) and rendered by myst-nb as raw HTML nodes (``nodes.raw``, format ``html``, class
``text_html``). Pandas never truncated them, but a table of 30-40 rows dominates its page and cannot
be taken away except by copying it off the screen. At ``doctree-resolved`` (once per written page,
HTML builders only) every table of a page's outputs with more than ``table_csv_threshold`` body rows
(default 12) is rewritten as

    <p class="scfm-table-csv"><a href=".../_downloads/tables/<page>-table-<n>.csv" download=...>
      Download CSV (N rows)</a> ...</p>
    <div class="scfm-long-table" role="region" tabindex="0" aria-label=...><table ...>...</table></div>

and its cells are written to ``<outdir>/_downloads/tables/<docname>-table-<n>.csv`` (``n``: the
table's position among all tables of the page's outputs, from 1). The box's maximum height, its
sticky header and the print style are in ``book/_static/scfm.css``; no JavaScript is involved.

The CSV holds the cells as displayed: the text of each cell with its whitespace collapsed, entities
decoded, a ``<br>`` kept as a line break. Header rows are flattened into one: per column, the
non-empty header cells from top to bottom joined by " / " (pandas' index-name row adds the index
name to its column; a column group spanning several columns repeats in each). A cell spanning
several rows or columns (pandas' sparsified MultiIndex) fills every position it covers, so each CSV
row is complete. Shorter tables, and every other output, are left byte for byte as they were.

Registered in ``_config.yml`` as ``sphinx: local_extensions: {sphinx_table_csv: tools}``; the path is
relative to the folder of ``_config.yml``, so a profile's site (``_site/<p>/``) links ``tools``
(tools/book_site.py).
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

#: Tables with more body rows than this get the CSV link and the scrolling box.
DEFAULT_THRESHOLD = 12
#: Where the CSV files go, relative to the HTML output folder.
DOWNLOAD_DIR = "_downloads/tables"
LINK_CLASS = "scfm-table-csv"
BOX_CLASS = "scfm-long-table"


@dataclass
class Cell:
    text: str
    header: bool
    colspan: int = 1
    rowspan: int = 1


@dataclass
class Table:
    """One top-level ``<table>`` of an HTML string: where it is and what its rows hold."""

    start: int  # offset of "<table"
    end: int = -1  # offset just past "</table>"
    head: list[list[Cell]] = field(default_factory=list)  # rows of <thead>
    body: list[list[Cell]] = field(default_factory=list)  # rows of <tbody>, <tfoot> or no section

    def header_rows(self) -> list[list[Cell]]:
        """The rows naming the columns: <thead>'s, or without one, leading rows of <th> cells only."""
        if self.head:
            return self.head
        rows = []
        for row in self.body:
            if row and all(c.header for c in row):
                rows.append(row)
            else:
                break
        return rows

    def data_rows(self) -> list[list[Cell]]:
        return self.body if self.head else self.body[len(self.header_rows()) :]

    @property
    def n_rows(self) -> int:
        return len(self.data_rows())

    def records(self) -> list[list[str]]:
        """The CSV rows: one flattened header row (when the table has a header), then the data rows."""
        head, data = _grid(self.header_rows()), _grid(self.data_rows())
        width = max([len(r) for r in head + data] or [0])
        head = [r + [""] * (width - len(r)) for r in head]
        data = [r + [""] * (width - len(r)) for r in data]
        records = []
        if head:
            names = []
            for j in range(width):
                parts: list[str] = []
                for row in head:
                    if row[j] and (not parts or parts[-1] != row[j]):
                        parts.append(row[j])
                names.append(" / ".join(parts))
            records.append(names)
        return records + data


def _grid(rows: list[list[Cell]]) -> list[list[str]]:
    """Rows of cells with spans -> a rectangular grid of strings, each span filling what it covers."""
    grid: list[list[str | None]] = []
    for i, row in enumerate(rows):
        while len(grid) <= i:
            grid.append([])
        j = 0
        for cell in row:
            while j < len(grid[i]) and grid[i][j] is not None:
                j += 1
            for di in range(min(cell.rowspan, len(rows) - i)):
                while len(grid) <= i + di:
                    grid.append([])
                target = grid[i + di]
                for dj in range(cell.colspan):
                    while len(target) <= j + dj:
                        target.append(None)
                    target[j + dj] = cell.text
            j += cell.colspan
    return [["" if v is None else v for v in row] for row in grid]


def _span(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 1000))
    except ValueError:
        return 1


_BR = "\x00"


class _TableFinder(HTMLParser):
    """Collects the top-level tables of an HTML string with their offsets and cells."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.source = source
        self.line_starts = [0]
        for k, ch in enumerate(source):
            if ch == "\n":
                self.line_starts.append(k + 1)
        self.tables: list[Table] = []
        self.depth = 0
        self.section = None
        self.row: list[Cell] | None = None
        self.cell: Cell | None = None
        self.text: list[str] = []

    def _offset(self) -> int:
        line, col = self.getpos()
        return self.line_starts[line - 1] + col

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.depth += 1
            if self.depth == 1:
                self.tables.append(Table(start=self._offset()))
                self.section = None
            return
        if self.depth != 1:
            return
        if tag in ("thead", "tbody", "tfoot"):
            self.section = tag
        elif tag == "tr":
            self._close_row()
            self.row = []
        elif tag in ("td", "th"):
            self._close_cell()
            if self.row is None:
                self.row = []
            a = dict(attrs)
            self.cell = Cell("", tag == "th", _span(a.get("colspan")), _span(a.get("rowspan")))
            self.text = []
        elif tag == "br" and self.cell is not None:
            self.text.append(_BR)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "table":
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "table":
            if self.depth == 1:
                self._close_row()
                end = self.source.find(">", self._offset())
                self.tables[-1].end = len(self.source) if end < 0 else end + 1
            self.depth = max(0, self.depth - 1)
            return
        if self.depth != 1:
            return
        if tag in ("td", "th"):
            self._close_cell()
        elif tag == "tr":
            self._close_row()
        elif tag in ("thead", "tbody", "tfoot"):
            self._close_row()
            self.section = None

    def handle_data(self, data):
        if self.depth == 1 and self.cell is not None:
            self.text.append(data)

    def _close_cell(self):
        if self.cell is not None:
            lines = "".join(self.text).split(_BR)
            self.cell.text = "\n".join(" ".join(line.split()) for line in lines).strip("\n")
            self.row.append(self.cell)
            self.cell, self.text = None, []

    def _close_row(self):
        self._close_cell()
        if self.row is not None:
            table = self.tables[-1]
            (table.head if self.section == "thead" else table.body).append(self.row)
            self.row = None


def find_tables(source: str) -> list[Table]:
    """The complete top-level tables of an HTML string (an unclosed one is left out)."""
    finder = _TableFinder(source)
    finder.feed(source)
    finder.close()
    return [t for t in finder.tables if t.end > t.start]


def to_csv(table: Table) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(table.records())
    return out.getvalue()


def rewrite(source: str, first_index: int, threshold: int, href_for):
    """Rewrite the long tables of one HTML output.

    ``first_index``: the page-wide position of this output's first table; ``href_for(index)``: the
    link to that table's CSV. Returns ``(new_html, [(index, table), ...] of the long tables,
    number of tables in source)``; ``new_html is source`` when nothing is long."""
    tables = find_tables(source)
    long = [(first_index + k, t) for k, t in enumerate(tables) if t.n_rows > threshold]
    if not long:
        return source, [], len(tables)
    pieces, last = [], 0
    for index, table in long:
        href = href_for(index)
        name = html.escape(href.rsplit("/", 1)[-1], quote=True)
        rows = table.n_rows
        pieces += [
            source[last : table.start],
            f'<p class="{LINK_CLASS}"><a class="reference download" href="{html.escape(href, quote=True)}" '
            f'download="{name}">Download CSV ({rows} rows)</a> '
            f'<span class="{LINK_CLASS}-note">all {rows} rows are in the box below; it scrolls</span></p>\n',
            f'<div class="{BOX_CLASS}" role="region" tabindex="0" aria-label="Table of {rows} rows (scrolls)">',
            source[table.start : table.end],
            "</div>",
        ]
        last = table.end
    pieces.append(source[last:])
    return "".join(pieces), long, len(tables)


def csv_name(docname: str, index: int) -> str:
    """``_downloads/tables/<docname>-table-<index>.csv`` (the docname keeps its folders)."""
    return f"{DOWNLOAD_DIR}/{docname}-table-{index}.csv"


def process_doctree(app, doctree, docname):
    """``doctree-resolved``: rewrite the long tables of the page's HTML outputs and write their CSVs."""
    if app.builder.format != "html":
        return
    from docutils import nodes
    from sphinx.util.osutil import relative_uri

    threshold = app.config.table_csv_threshold
    outdir = Path(app.outdir)
    for stale in (outdir / DOWNLOAD_DIR).glob(f"{docname}-table-*.csv"):
        stale.unlink()  # a table that is no longer long, or no longer there
    page_uri = app.builder.get_target_uri(docname).split("#", 1)[0]
    index = 1
    for node in list(doctree.findall(nodes.raw)):
        if "html" not in node.get("format", "").split() or "text_html" not in node.get("classes", []):
            continue
        source = node.astext()
        new, long, count = rewrite(source, index, threshold, lambda i: relative_uri(page_uri, csv_name(docname, i)))
        for i, table in long:
            target = outdir / csv_name(docname, i)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(to_csv(table), encoding="utf-8")
        if new is not source:
            replacement = nodes.raw("", new, format=node["format"], classes=list(node["classes"]))
            replacement.source, replacement.line = node.source, node.line
            node.replace_self(replacement)
        index += count


def setup(app):
    app.add_config_value("table_csv_threshold", DEFAULT_THRESHOLD, "html", types=[int])
    app.connect("doctree-resolved", process_doctree)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
