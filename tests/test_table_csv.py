"""Long result tables get a CSV download and a scrolling box (tools/sphinx_table_csv.py, the book's
local Sphinx extension): the transform on HTML snippets, the path _config.yml loads it from (also in a
profile's site), and a real two-page Jupyter Book build."""

import csv
import importlib.util
import io
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import yaml
from conftest import REPO


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


table_csv = _load("sphinx_table_csv")
book_site = _load("book_site")


def _frame(n_rows):
    return pd.DataFrame(
        {
            "family": ["geneformer" if i % 2 else "scgpt" for i in range(n_rows)],
            "metric": [f"macro_f1 & <ood> {i}" for i in range(n_rows)],
            "gain": [f"{0.01 * i:+.4f} ({-0.1:+.4f} to {0.2:+.4f})" for i in range(n_rows)],
            "lack_of_fit": ["F = 1.57, p = 0.241"] * n_rows,
        }
    )


def _read(text):
    return list(csv.reader(io.StringIO(text)))


def _rewrite(source, threshold=12, first=1):
    return table_csv.rewrite(source, first, threshold, lambda i: f"../_downloads/tables/page-table-{i}.csv")


def test_a_long_table_gets_link_box_and_a_csv_of_its_cells():
    df = _frame(20)
    source = "<div><style scoped>.dataframe td {}</style>\n" + df.to_html(index=False) + "\n</div>"
    new, long, count = _rewrite(source)
    assert count == 1 and [i for i, _ in long] == [1]
    link = re.search(r'<p class="scfm-table-csv"><a [^>]*href="([^"]+)"[^>]*>Download CSV \(20 rows\)</a>', new)
    assert link and link.group(1) == "../_downloads/tables/page-table-1.csv"
    assert new.index(link.group(0)) < new.index('<div class="scfm-long-table"') < new.index("<table")
    assert new.index("</table>") < new.index("</table></div>") + len("</table>")
    # only the link and the box were added: the table itself is byte for byte the same
    assert (
        re.sub(r'<p class="scfm-table-csv">.*?</p>\n<div class="scfm-long-table"[^>]*>', "", new, flags=re.S).replace(
            "</table></div>", "</table>"
        )
        == source
    )
    rows = _read(table_csv.to_csv(long[0][1]))
    assert rows[0] == list(df.columns)
    assert rows[1:] == df.astype(str).values.tolist()  # entities decoded, commas quoted, as displayed
    back = pd.read_csv(io.StringIO(table_csv.to_csv(long[0][1])), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(back, df.astype(str))


def test_a_short_table_and_other_html_are_untouched():
    source = _frame(12).to_html(index=False)  # 12 rows: not more than the threshold
    new, long, count = _rewrite(source)
    assert new is source and long == [] and count == 1
    plain = "<p>no table here</p>"
    assert _rewrite(plain) == (plain, [], 0)


def test_index_name_row_and_sparsified_multiindex_are_flattened():
    df = pd.DataFrame(
        {
            "family": ["scgpt"] * 8 + ["geneformer"] * 8,
            "seed": list(range(16)),
            "score": [f"{i / 10:.3f}" for i in range(16)],
            "n": list(range(16)),
        }
    )
    html = df.set_index(["family", "seed"]).to_html()  # header: columns, then the index names
    assert "rowspan" in html and html.count("<tr") == 18
    ((_, table),) = _rewrite(html)[1]
    assert table.n_rows == 16
    rows = _read(table_csv.to_csv(table))
    assert rows[0] == ["family", "seed", "score", "n"]
    assert rows[1:] == df.astype(str).values.tolist()  # the family fills each of its rows
    wide = pd.DataFrame(
        [[1, 2, 3]] * 14, columns=pd.MultiIndex.from_tuples([("gain", "mean"), ("gain", "sd"), ("p", "")])
    )
    ((_, table),) = _rewrite(wide.to_html(index=False))[1]
    assert _read(table_csv.to_csv(table))[0] == ["gain / mean", "gain / sd", "p"]


def test_several_tables_are_numbered_across_the_page_and_a_br_is_a_line_break():
    short, long_ = _frame(3).to_html(index=False), _frame(13).to_html(index=False)
    long_ = long_.replace("<td>scgpt</td>", "<td>scgpt<br>base</td>", 1)
    new, long, count = _rewrite(f"{short}\n<p>then</p>\n{long_}\n{long_}", first=4)
    assert count == 3 and [i for i, _ in long] == [5, 6]
    assert "page-table-5.csv" in new and "page-table-6.csv" in new and new.count("scfm-long-table") == 2
    assert _read(table_csv.to_csv(long[0][1]))[1][0] == "scgpt\nbase"


def test_config_loads_the_extension_from_tools_also_in_a_profiles_site(tmp_path, monkeypatch):
    """_config.yml's local_extensions path is relative to the folder of _config.yml: the repository
    for `make html`, _site/<profile>/ for `make book`, where tools/book_site.py links tools/."""
    from jupyter_book.config import get_final_config

    local = yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]["local_extensions"]
    assert local == {"sphinx_table_csv": "tools"}
    repo = tmp_path / "repo"
    (repo / "book" / "_static").mkdir(parents=True)
    shutil.copy(REPO / "_config.yml", repo / "_config.yml")
    shutil.copytree(REPO / "tools", repo / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    site = book_site.prepare("tiny", repo, includes=[])
    original = list(sys.path)
    for config in (repo / "_config.yml", site / "_config.yml"):
        monkeypatch.setattr(sys, "path", list(original))
        before = set(sys.path)
        sphinx_config, _ = get_final_config(
            user_yaml=config, sourcedir=config.parent, cli_config={"latex_individualpages": False}
        )
        assert "sphinx_table_csv" in sphinx_config["extensions"]
        added = [Path(p) for p in sys.path if p not in before]
        assert [p for p in added if (p / "sphinx_table_csv.py").is_file()], (config, added)
        assert sphinx_config["table_csv_threshold"] == table_csv.DEFAULT_THRESHOLD


def _notebook(path, tables):
    nb = nbformat.v4.new_notebook()
    nb.metadata.update(
        kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
        language_info={"name": "python"},
    )
    nb.cells.append(nbformat.v4.new_markdown_cell("# Tables"))
    for df in tables:
        cell = nbformat.v4.new_code_cell("display(df)")
        cell.outputs = [
            nbformat.v4.new_output(
                "display_data", data={"text/html": df.to_html(index=False), "text/plain": df.to_string()}
            )
        ]
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_a_book_build_writes_the_csv_and_links_it(tmp_path):
    """A two-page book with the project's _config.yml: the notebook page's long table (the second of
    its two) gets its CSV in _build/html/_downloads/tables/ and a working link; -W: no warning."""
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    shutil.copytree(REPO / "book" / "_static", tmp_path / "book" / "_static")
    shutil.copytree(REPO / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n- file: sub/tables\n")
    (tmp_path / "index.md").write_text("# A test book\n\nSee the tables.\n")
    long_df = _frame(30)
    _notebook(tmp_path / "sub" / "tables.ipynb", [_frame(4), long_df])
    start = time.monotonic()
    build = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "-W", "-n"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert time.monotonic() - start < 120
    html = tmp_path / "_build" / "html"
    written = sorted(p.relative_to(html).as_posix() for p in (html / "_downloads" / "tables").rglob("*.csv"))
    assert written == ["_downloads/tables/sub/tables-table-2.csv"]
    back = pd.read_csv(html / written[0], dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(back, long_df.astype(str))
    page = (html / "sub" / "tables.html").read_text()
    hrefs = re.findall(r'<a [^>]*href="([^"]+\.csv)"[^>]*>Download CSV \((\d+) rows\)</a>', page)
    assert hrefs == [("../_downloads/tables/sub/tables-table-2.csv", "30")]
    assert (html / "sub" / hrefs[0][0]).resolve() == (html / written[0]).resolve()
    assert page.count('<div class="scfm-long-table"') == 1 and page.count('class="dataframe"') == 2
    assert "Download CSV" not in (html / "index.html").read_text()


def test_the_books_stylesheet_styles_the_link_and_the_box(repo):
    css = (repo / "book" / "_static" / "scfm.css").read_text()
    box = re.search(rf"div\.{table_csv.BOX_CLASS} \{{([^}}]*)\}}", css)
    assert box and "max-height" in box.group(1) and "overflow: auto" in box.group(1)
    assert f"p.{table_csv.LINK_CLASS}" in css and "position: sticky" in css and "@media print" in css
