"""The committed books show every chapter figure at its own size: no image wider than the text column.

An image wider than the column (scfm_lib.pl.COLUMN_PX, measured in headless Chromium) is scaled down
by the browser, and its type with it, below the 9 pt a reader should meet. The chapters draw through
scfm_lib.pl.column_figure and scfm_lib.pl.fit_to_column, which keep them inside the column; this test
reads the images the committed books really hold.
"""

import base64
import struct

import nbformat
import pytest

from scfm_book import CHAPTERS
from scfm_lib import pl

# Every page listed as a chapter: the intro, the data job's page (scfm_lib.study.data_views) and the chapter rules'.
DRAWN_BY_CHAPTER_RULES = ["intro", *(name for name, _ in CHAPTERS)]


def png_widths(notebook) -> list[int]:
    """Pixel widths of every PNG a notebook shows (outputs and glued figures)."""
    widths = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            for mime, payload in output.get("data", {}).items():
                if mime.endswith("image/png"):
                    header = base64.b64decode(payload[:64])  # PNG: signature, IHDR length and type, width
                    widths.append(struct.unpack(">I", header[16:20])[0])
    return widths


def committed_chapters(repo):
    return [
        path
        for book in sorted((repo / "book").iterdir())
        if (book / "intro.ipynb").exists()
        for name in DRAWN_BY_CHAPTER_RULES
        if (path := book / f"{name}.ipynb").exists()
    ]


def test_png_widths_reads_the_image_header():
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, _ = plt.subplots(figsize=(3.0, 2.0))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(buffer.getvalue()).decode()})
    ]
    notebook.cells = [cell]
    assert png_widths(notebook) == [300]


def test_committed_books_have_chapters_to_check(repo):
    books = {path.parent.name for path in committed_chapters(repo)}
    assert {"quick", "quick_scgpt", "real"} <= books


@pytest.mark.parametrize("name", DRAWN_BY_CHAPTER_RULES)
def test_every_committed_chapter_figure_fits_the_column(repo, name):
    too_wide = {}
    for path in (p for p in committed_chapters(repo) if p.stem == name):
        widths = [w for w in png_widths(nbformat.read(path, as_version=4)) if w > pl.COLUMN_PX]
        if widths:
            too_wide[str(path.relative_to(repo))] = widths
    assert not too_wide, f"images wider than the {pl.COLUMN_PX} px column (shown scaled down): {too_wide}"


# seaborn 0.13's heatmap calls matplotlib's set_bad itself: nothing of ours to change
@pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")
def test_program_heatmap_names_every_program_and_cell_type():
    """The data page's heatmap names each of its columns and rows, at >= 9 pt (seaborn's default named
    every other one when 30 programs crowded the axis)."""
    import anndata as ad
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    from scfm_lib.study import data_views

    rng = np.random.default_rng(0)
    n_cells, n_genes, n_types = 240, 200, 12
    view = ad.AnnData(rng.gamma(1.0, 1.0, (n_cells, n_genes)).astype(np.float32))
    view.obs["cell_type"] = [f"type-{i % n_types}" for i in range(n_cells)]
    view.uns["gene_programs"] = {f"program_{p}": list(range(5 * p, 5 * p + 5)) for p in range(40)}
    means = data_views.program_means(view)
    ax = data_views.program_heatmap(view).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(means.columns)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(means.index)
    assert len(means.columns) == 30 and ax.get_xlabel() == "gene program (30 most variable)"
    assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= pl.MIN_FONT_PT
