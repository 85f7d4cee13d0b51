"""The study's endpoints and their inference: seed-paired gains, the masking contrast D, power,
lack of fit and equivalence margins.

The design these functions assume (the book's masking chapter states the same): every seed
``s`` is one *block*: the same initialization, the same nested corpus subsets and the same
finetuning seeds at every corpus fraction. So a seed's scores at two fractions are paired, and
every interval below is taken over seeds (n seeds give n - 1 degrees of freedom), never over
resamples within a fraction.

- **gain** of one series (one family, task, mode and metric): ``g_s = y(f_max, s) - y(f_min, s)``,
  the change from the smallest to the largest pretrained corpus within seed ``s``.
- **masking contrast** ``D_s = g_frozen_s - g_finetuned_s`` (metric units): D > 0 means the frozen
  representation gains more from corpus size than the finetuned score does, i.e. finetuning
  masks part of what scale adds.
- intervals: the paired t-interval of the mean over seeds; tests: the exact sign-flip
  (permutation) test of the mean, whose smallest attainable two-sided p-value is ``2 / 2**n``.

All functions take plain arrays or the tidy records of :func:`scfm_lib.results.load_records`
(columns ``mode``, ``metric``, ``fraction``, ``seed``, ``n_cells``, ``value``).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize
from scipy import stats as sps


@dataclass(frozen=True)
class PairedEstimate:
    """The mean of per-seed differences with its t-interval and tests.

    ``mean``: mean over seeds; ``sd``: their standard deviation (ddof 1); ``ci_low``/``ci_high``:
    the two-sided ``ci`` t-interval with ``n - 1`` degrees of freedom; ``p_t``: the paired t-test's
    two-sided p-value for mean 0; ``p_sign_flip``: the exact sign-flip test's (all ``2**n``
    assignments of signs); ``n``: seeds.
    """

    mean: float
    sd: float
    ci_low: float
    ci_high: float
    p_t: float
    p_sign_flip: float
    n: int
    ci: float

    def to_dict(self) -> dict:
        """The fields as a plain dict (for JSON and tables).

        Returns
        -------
        dict
            ``mean``, ``sd``, ``ci_low``, ``ci_high``, ``p_t``, ``p_sign_flip``, ``n``, ``ci``.
        """
        return asdict(self)

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0 (False for an undefined interval)."""
        return bool(self.ci_low > 0 or self.ci_high < 0)


def t_interval(differences: ArrayLike, ci: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``differences`` (one per seed) and its two-sided ``ci`` t-interval.

    The interval is ``mean +- t_{(1+ci)/2, n-1} * sd / sqrt(n)``. NaN bounds for fewer than 2 values.

    Parameters
    ----------
    differences : array_like of float, shape (n,)
        One paired difference per seed (non-finite values are dropped).
    ci : float
        Confidence level in (0, 1).

    Returns
    -------
    mean : float
        The mean difference (NaN for no finite value).
    low, high : float
        The interval's bounds, in metric units (NaN for fewer than 2 values).

    Raises
    ------
    ValueError
        When ``ci`` lies outside (0, 1).
    """
    d = _finite(differences)
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = sps.t.ppf((1 + ci) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return mean, float(mean - half), float(mean + half)


def sign_flip_pvalue(differences: ArrayLike) -> float:
    """Exact two-sided sign-flip (permutation) p-value for "the mean difference is 0", in (0, 1].

    Under the null each seed's difference is as likely positive as negative; the p-value is the
    share of the ``2**n`` sign assignments whose ``|mean|`` is at least the observed one (the
    observed assignment included). The smallest attainable value is ``2 / 2**n`` (1/128 for 8
    seeds): state it beside the result.

    Parameters
    ----------
    differences : array_like of float, shape (n,)
        One paired difference per seed (non-finite values are dropped), n <= 20.

    Returns
    -------
    float
        The p-value in [2 / 2**n, 1]; NaN for no finite difference.

    Raises
    ------
    ValueError
        When there are more than 20 differences (2**n assignments would be too many).
    """
    d = _finite(differences)
    if len(d) == 0:
        return float("nan")
    if len(d) > 20:
        raise ValueError(
            f"the exact sign-flip test enumerates 2**n assignments; n = {len(d)} is too many "
            "(use the t-test p-value for n > 20)"
        )
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))  # [2**n, n]
    means = np.abs(signs @ d) / len(d)
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


def paired_estimate(differences: ArrayLike, ci: float = 0.95) -> PairedEstimate:
    """The :class:`PairedEstimate` of per-seed differences (NaNs dropped).

    Parameters
    ----------
    differences : array_like of float, shape (n,)
        One paired difference per seed.
    ci : float
        Confidence level of the t-interval, in (0, 1).

    Returns
    -------
    PairedEstimate
        Mean, sd, t-interval, paired t and sign-flip p-values (each in [0, 1] or NaN), n and ci.
    """
    d = _finite(differences)
    mean, low, high = t_interval(d, ci)
    if len(d) >= 2 and d.std(ddof=1) > 0:
        p_t = float(sps.ttest_1samp(d, 0.0).pvalue)
    elif len(d) >= 2:  # every seed gives the same difference: exactly 0 or exactly not
        p_t = 1.0 if mean == 0 else 0.0
    else:
        p_t = float("nan")
    return PairedEstimate(
        mean=mean,
        sd=float(d.std(ddof=1)) if len(d) >= 2 else float("nan"),
        ci_low=low,
        ci_high=high,
        p_t=p_t,
        p_sign_flip=sign_flip_pvalue(d),
        n=len(d),
        ci=ci,
    )


def seed_gains(
    series: pd.DataFrame, low_fraction: float | None = None, high_fraction: float | None = None
) -> pd.Series:
    """Per seed, ``value`` at the largest pretrained fraction minus ``value`` at the smallest.

    Parameters
    ----------
    series : pandas.DataFrame
        Rows of one series (one mode and metric of one family and task) with columns ``fraction``,
        ``seed`` and ``value``; several rows per (fraction, seed) (e.g. finetuning seeds) are
        averaged first.
    low_fraction, high_fraction : float, optional
        The endpoint fractions; default the smallest and the largest fraction > 0.

    Returns
    -------
    pandas.Series
        Indexed by seed, named ``gain``: the gain of each seed present at both fractions, in metric
        units.

    Raises
    ------
    ValueError
        When there is no pretrained row, the fractions are not distinct, or a fraction has no rows.
    """
    pretrained = series[series["fraction"] > 0]
    if pretrained.empty:
        raise ValueError("no pretrained rows (fraction > 0): a gain needs two corpus sizes")
    low = float(pretrained["fraction"].min()) if low_fraction is None else float(low_fraction)
    high = float(pretrained["fraction"].max()) if high_fraction is None else float(high_fraction)
    if not low < high:
        raise ValueError(f"a gain needs two distinct fractions, got {low} and {high}")
    by = series.groupby(["fraction", "seed"])["value"].mean().unstack("fraction")
    for f in (low, high):
        if f not in by.columns:
            raise ValueError(f"fraction {f} has no rows; present: {sorted(by.columns)}")
    return (by[high] - by[low]).dropna().rename("gain")


def masking_contrast(frozen: pd.DataFrame, finetuned: pd.DataFrame, ci: float = 0.95) -> dict:
    """D = gain_frozen - gain_finetuned, paired over seeds, with both gains.

    Parameters
    ----------
    frozen, finetuned : pandas.DataFrame
        The frozen and the finetuned series of one family, task and metric (as :func:`seed_gains`
        takes them).
    ci : float
        Confidence level of the t-intervals, in (0, 1).

    Returns
    -------
    dict
        ``gain_frozen``, ``gain_finetuned`` and ``D``, each a :meth:`PairedEstimate.to_dict`, over
        the seeds present in both series; ``seeds`` lists them.

    Raises
    ------
    ValueError
        When no seed is scored both frozen and finetuned at both endpoint fractions.
    """
    g_frozen, g_ft = seed_gains(frozen), seed_gains(finetuned)
    seeds = sorted(set(g_frozen.index) & set(g_ft.index))
    if not seeds:
        raise ValueError("D needs seeds scored both frozen and finetuned at both endpoint fractions; found none")
    g_frozen, g_ft = g_frozen.loc[seeds], g_ft.loc[seeds]
    return {
        "gain_frozen": paired_estimate(g_frozen, ci).to_dict(),
        "gain_finetuned": paired_estimate(g_ft, ci).to_dict(),
        "D": paired_estimate(g_frozen - g_ft, ci).to_dict(),
        "seeds": [int(s) for s in seeds],
    }


# ------------------------------------------------------------------------------ power
def paired_t_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test to detect a true mean difference ``effect``, in [0, 1].

    At level ``alpha``, with between-seed standard deviation ``sd`` and ``n`` seeds (noncentral t).

    Parameters
    ----------
    effect : float
        The true mean difference, in metric units.
    sd : float
        Between-seed standard deviation of the differences, > 0.
    n : int
        Seeds, >= 2.
    alpha : float
        The test's level.

    Returns
    -------
    float
        The power in [0, 1].

    Raises
    ------
    ValueError
        When ``n < 2`` or ``sd <= 0``.
    """
    if n < 2 or not sd > 0:
        raise ValueError(f"power needs n >= 2 seeds and sd > 0, got n={n}, sd={sd}")
    df, nc = n - 1, abs(effect) * np.sqrt(n) / sd
    crit = sps.t.ppf(1 - alpha / 2, df)
    power = sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc)
    if not np.isfinite(power):  # scipy's noncentral t gives NaN far in the tail (few seeds, large effect)
        power = 1.0 if nc > crit else 0.0
    return float(min(1.0, power))


def detectable_effect(sd: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true mean difference the paired t-test detects with probability ``power``.

    Two-sided, level ``alpha``, for ``n`` seeds of between-seed SD ``sd``: metric units, > 0.

    Parameters
    ----------
    sd : float
        Between-seed standard deviation, > 0.
    n : int
        Seeds, >= 2.
    power : float
        The required power, in (0, 1).
    alpha : float
        The test's level.

    Returns
    -------
    float
        The detectable effect in metric units, >= 0 (``inf`` when none below ``1e6 * sd`` is).

    Raises
    ------
    ValueError
        When ``power`` lies outside (0, 1), ``n < 2`` or ``sd <= 0``.
    """
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    if paired_t_power(0.0, sd, n, alpha) >= power:
        return 0.0
    high = sd
    while paired_t_power(high, sd, n, alpha) < power:
        high *= 2
        if high > 1e6 * sd:
            return float("inf")
    return float(optimize.brentq(lambda e: paired_t_power(e, sd, n, alpha) - power, 0.0, high, xtol=1e-10))


def seeds_for_power(effect: float, sd: float, power: float = 0.8, alpha: float = 0.05, max_seeds: int = 1000) -> int:
    """The fewest seeds (>= 2) at which the paired t-test reaches ``power`` for ``effect``.

    Parameters
    ----------
    effect : float
        The true mean difference, nonzero.
    sd : float
        Between-seed standard deviation, > 0.
    power : float
        The required power, in (0, 1).
    alpha : float
        The test's level.
    max_seeds : int
        The most seeds considered.

    Returns
    -------
    int
        Seeds in ``[2, max_seeds]``; ``max_seeds + 1`` when even ``max_seeds`` do not reach ``power``.

    Raises
    ------
    ValueError
        When ``effect`` is 0 or ``sd <= 0``.
    """
    if not effect or not sd > 0:
        raise ValueError(f"seeds_for_power needs effect != 0 and sd > 0, got {effect}, {sd}")
    for n in range(2, max_seeds + 1):
        if paired_t_power(effect, sd, n, alpha) >= power:
            return n
    return max_seeds + 1


# ------------------------------------------------------------------------------ slopes and lack of fit
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


# ------------------------------------------------------------------------------ equivalence
#: How each metric's equivalence margin is derived: a share of its attainable range on the task.
MARGIN_SHARE = 0.1


def equivalence_margin(
    metric: str, *, chance: float | None = None, ceiling: float | None = None, share: float = MARGIN_SHARE
) -> float:
    """The smallest change of ``metric`` that matters: ``share`` of its attainable range on the task.

    The range runs from what a predictor without information scores (``chance``) to what the
    best reference scores (``ceiling``): for annotation metrics (macro-F1, accuracy) from
    1 / (number of classes) to the logistic regression on all genes; for a pretraining loss
    from the context-free predictor's loss (``chance``) to 0; for clustering agreement (ARI,
    NMI) from 0 to the PCA baseline; for gene-program retrieval from its chance level to 1; for
    perturbation shifts (cosine differences) from 0 to the shift of the input embeddings
    themselves. So an F1 margin and a cosine margin each come from their own scale.

    Parameters
    ----------
    metric : str
        The metric's name, for the error message.
    chance, ceiling : float
        The two ends of the range; ``ceiling`` defaults to 0 (a loss) when only ``chance`` is given.
    share : float
        Share of the range, in (0, 1]; the book uses :data:`MARGIN_SHARE` (a tenth).

    Returns
    -------
    float
        The margin, > 0, in the metric's units.

    Raises
    ------
    ValueError
        When ``chance`` is missing, ``share`` lies outside (0, 1], or the range is empty or undefined.
    """
    if chance is None:
        raise ValueError(f"equivalence_margin({metric!r}) needs the chance end of the range")
    ceiling = 0.0 if ceiling is None else ceiling
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    width = abs(float(ceiling) - float(chance))
    if not np.isfinite(width) or width == 0:
        raise ValueError(f"the range of {metric!r} is empty or undefined (chance {chance}, ceiling {ceiling})")
    return float(share * width)


def equivalence(estimate: PairedEstimate | dict, margin: float, differences: ArrayLike | None = None) -> dict:
    """TOST for a paired mean: equivalent to 0 when the 90% t-interval lies inside ``[-margin, margin]``.

    The interval is the ``1 - 2 * 0.05`` (90%) t-interval. Pass ``differences`` (the per-seed values)
    or an estimate whose interval is already 90%.

    Parameters
    ----------
    estimate : PairedEstimate or dict
        The paired estimate (or its :meth:`PairedEstimate.to_dict`); its interval is used when
        ``differences`` is not given.
    margin : float
        The equivalence margin, > 0 (:func:`equivalence_margin`).
    differences : array_like of float, optional
        The per-seed differences, from which the 90% interval is computed.

    Returns
    -------
    dict
        ``{"margin", "ci90_low", "ci90_high", "equivalent"}``.

    Raises
    ------
    ValueError
        When ``margin <= 0``, or ``estimate``'s interval is not 90% and no ``differences`` are given.
    """
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if differences is not None:
        _, low, high = t_interval(differences, 0.90)
    else:
        e = estimate if isinstance(estimate, dict) else estimate.to_dict()
        if abs(e["ci"] - 0.90) > 1e-9:
            raise ValueError("equivalence needs the 90% interval: pass the per-seed differences")
        low, high = e["ci_low"], e["ci_high"]
    return {
        "margin": float(margin),
        "ci90_low": float(low),
        "ci90_high": float(high),
        "equivalent": bool(-margin <= low and high <= margin),
    }


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]
