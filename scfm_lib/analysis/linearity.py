"""Is a series a straight line in log10(cells)? The lack-of-fit F-test with seeds as blocks.

A slope against log10(cells) is quoted for a secondary endpoint only when this test does not
reject the line (:func:`lack_of_fit`); the seed-paired gains themselves are in
:mod:`scfm_lib.analysis.endpoints`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps


def lack_of_fit(series: pd.DataFrame) -> dict:
    """Is the mean of a series a straight line in log10(cells)? An F-test with seeds as blocks.

    Two models of ``value`` over the pretrained runs (``n_cells > 0``), both with one intercept
    per seed (seeds are paired blocks): the *line* ``a_s + b * log10(n_cells)`` and the *cell
    means* ``a_s + m_f`` (one free mean per fraction). With k fractions, S seeds and N runs,
    ``F = ((SSE_line - SSE_means) / (k - 2)) / (SSE_means / (N - S - k + 1))``. A small p-value
    rejects the line: a slope against log10(cells) then misdescribes the series and is not quoted.

    Parameters
    ----------
    series : pandas.DataFrame
        The rows of one series (columns ``n_cells``, ``seed``, ``value``).

    Returns
    -------
    dict
        ``{"F", "df1", "df2", "p", "slope"}``: ``F`` >= 0, ``p`` in [0, 1], ``slope`` the line's
        ``b`` (change per tenfold more cells); NaN F and p with fewer than 3 fractions or no
        residual degrees of freedom.
    """
    rows = series[series["n_cells"] > 0]
    rows = rows.groupby(["n_cells", "seed"], as_index=False)["value"].mean()
    x = np.log10(rows["n_cells"].to_numpy(float))
    y = rows["value"].to_numpy(float)
    seeds = pd.Categorical(rows["seed"])
    sizes = pd.Categorical(rows["n_cells"])
    n, S, k = len(rows), len(seeds.categories), len(sizes.categories)
    seed_dummies = np.eye(S)[seeds.codes]  # [N, S]
    line = np.column_stack([seed_dummies, x])  # [N, S + 1]
    means = np.column_stack([seed_dummies, np.eye(k)[sizes.codes][:, 1:]])  # [N, S + k - 1]
    sse_line, slope = _sse(line, y)
    sse_means, _ = _sse(means, y)
    df1, df2 = k - 2, n - S - k + 1
    b = float(slope[-1]) if k >= 2 else float("nan")
    if df1 < 1 or df2 < 1:
        return {"F": float("nan"), "df1": df1, "df2": df2, "p": float("nan"), "slope": b}
    if sse_means <= 0:
        F = 0.0 if sse_line - sse_means <= 1e-12 else float("inf")
    else:
        F = float(max(sse_line - sse_means, 0.0) / df1 / (sse_means / df2))
    return {"F": F, "df1": int(df1), "df2": int(df2), "p": float(sps.f.sf(F, df1, df2)), "slope": b}


def _sse(design: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    return float(residual @ residual), coef
