"""The book's page geometry: figures one text column wide, laid out inside it, type legible as shown.

A figure drawn through :func:`column_figure` and finished with :func:`fit_to_column` is shown by the
book at its own size, so its type keeps the size :func:`theme` sets (>= :data:`MIN_FONT_PT`);
:func:`smallest_rendered_font` checks it at the size a page shows.
"""

from __future__ import annotations

import warnings
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

#: The width figures get in the book's text column, in pixels, and the resolution of the notebooks'
#: inline figures: an image wider than the column is shown scaled down to it (:func:`rendered_scale`),
#: and its type with it. Measured in headless Chromium at a 1280 px window: the article
#: (book/_static/scfm.css, pydata-sphinx-theme) is 740 px wide, its content 676 px (32 px padding a side).
COLUMN_PX, FIGURE_DPI = 676, 100
#: A figure this wide (6.76 inches) is shown at its own size.
COLUMN_INCHES = COLUMN_PX / FIGURE_DPI
#: The most panels a row of a column-wide figure holds with its type legible (:func:`column_figure`).
MAX_PANELS_PER_ROW = 3
#: The smallest type a reader should meet, in points at the size the page shows it.
MIN_FONT_PT = 9.0
#: The size of the type scfm_lib.pl sets itself (cell values, tick labels), in points: legible at full
#: column width and down to a figure 1.1 columns wide.
SMALL_FONT_PT = 10.0


def theme() -> None:
    """The book's figure style: seaborn's whitegrid at the ``notebook`` scale (11-12 pt type).

    Every chapter calls it once before it draws, so every figure has the same type.
    """
    sns.set_theme(style="whitegrid", context="notebook")


def column_figure(
    n_rows: int = 1, n_cols: int = 1, *, row_height: float = 3.8, **subplots_kw: Any
) -> tuple[plt.Figure, np.ndarray]:
    """A figure exactly one text column wide, so the book shows it at its own size.

    Every chapter draws its figures through it: at :data:`COLUMN_INCHES` wide the type is shown at
    the size it was set (>= :data:`MIN_FONT_PT` with :func:`theme`), where a wider figure is scaled
    down and its type with it. Panels that do not fit a row go into further rows.

    Parameters
    ----------
    n_rows, n_cols : int
        Panels down and across; ``n_cols`` at most :data:`MAX_PANELS_PER_ROW`.
    row_height : float
        Height of one row of panels, in inches.
    **subplots_kw
        Passed to :func:`matplotlib.pyplot.subplots` (``sharey``, ``gridspec_kw``, ...).

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure, :data:`COLUMN_INCHES` by ``n_rows * row_height`` inches.
    axes : numpy.ndarray
        The axes, shape ``(n_rows, n_cols)`` (never squeezed).

    Raises
    ------
    ValueError
        When a row would hold more than :data:`MAX_PANELS_PER_ROW` panels, or a count is below 1.
    """
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"a figure needs at least one row and one column of panels, not {n_rows} x {n_cols}")
    if n_cols > MAX_PANELS_PER_ROW:
        raise ValueError(
            f"{n_cols} panels across a {COLUMN_INCHES:g}-inch column leave each too narrow to read; "
            f"draw at most {MAX_PANELS_PER_ROW} per row and put the others in further rows"
        )
    return plt.subplots(n_rows, n_cols, figsize=(COLUMN_INCHES, n_rows * row_height), squeeze=False, **subplots_kw)


def fit_to_column(fig: plt.Figure, **tight_layout_kw: Any) -> None:
    """Lay a figure out inside its canvas, and warn when the book would show it scaled down.

    Every chapter figure ends with it instead of ``fig.tight_layout()``. Tight layout runs twice:
    the second pass sees the tick labels of the axes sizes the first chose (one pass left a
    two-line axis label hanging 0.3 inch off the canvas).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure, usually from :func:`column_figure`.
    **tight_layout_kw
        Passed to :meth:`matplotlib.figure.Figure.tight_layout` (``rect`` for a figure legend).

    Returns
    -------
    None
        The figure is laid out; a ``UserWarning`` names the texts that still overhang when the
        image would be wider than :data:`COLUMN_PX` (its type then shows smaller than it was set).
    """
    from matplotlib.text import Text

    for _ in range(2):
        fig.tight_layout(**tight_layout_kw)
    shown = shown_width_px(fig)
    if shown > COLUMN_PX:
        renderer = fig.canvas.get_renderer()
        # Tick labels are left out: tight layout makes room for the drawn ones, and those outside the
        # axis limits (not drawn) would be named falsely.
        ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for t in axis.get_ticklabels()}
        overhanging = [
            t.get_text().replace("\n", " ")
            for t in fig.findobj(Text)
            if id(t) not in ticks
            and t.get_visible()
            and t.get_text().strip()
            and (t.get_window_extent(renderer).x0 < 0 or t.get_window_extent(renderer).x1 > fig.bbox.width)
        ]
        warnings.warn(
            f"the book shows this figure {shown:.0f} px wide, wider than its {COLUMN_PX} px column, so its type "
            f"shrinks; shorten or wrap what overhangs the canvas: {overhanging or 'a figure wider than the column'}",
            stacklevel=2,
        )


def rendered_scale(fig: plt.Figure) -> float:
    """How much the book scales a figure: the column's width over its image's, at most 1.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.

    Returns
    -------
    float
        ``min(1, COLUMN_PX / shown_px)``, where ``shown_px`` is :func:`shown_width_px`.
    """
    return min(1.0, COLUMN_PX / shown_width_px(fig))


def shown_width_px(fig: plt.Figure) -> float:
    """The width of the image the notebooks show for a figure, in pixels.

    The inline backend saves a figure cropped to what it draws (``bbox_inches="tight"``) plus
    ``savefig.pad_inches`` on each side, at :data:`FIGURE_DPI`: a title or legend that overhangs
    the figure widens the image, and the book then scales it down.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure (it is drawn first).

    Returns
    -------
    float
        The image width in pixels; at most :data:`COLUMN_PX` for a figure shown at its own size.
    """
    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())
    return (drawn.width + 2 * plt.rcParams["savefig.pad_inches"]) * FIGURE_DPI


def smallest_rendered_font(fig: plt.Figure) -> float:
    """The smallest type of a figure as the book shows it, in points (compare with :data:`MIN_FONT_PT`).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure, drawn or not (it is drawn first, so tick labels exist).

    Returns
    -------
    float
        The smallest font size of a visible, non-empty text times :func:`rendered_scale`; inf for a
        figure without text.
    """
    from matplotlib.text import Text

    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes, default=float("inf")) * rendered_scale(fig)
