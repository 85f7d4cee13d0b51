"""The study's endpoints: seed-paired gains, the masking contrast D, their t-intervals and tests.

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

The rest of the inference on these endpoints lives beside this module: the power of the paired
t-test in :mod:`scfm_lib.analysis.power`, the lack-of-fit test of a line in log10(cells) in
:mod:`scfm_lib.analysis.linearity`, and equivalence margins and the TOST in
:mod:`scfm_lib.analysis.equivalence`.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats as sps

# Re-exported because the masking chapter (nbs/masking.ipynb) calls endpoints.paired_t_power and
# endpoints.seeds_for_power, and book/workshop.md calls endpoints.detectable_effect; the package
# itself imports them from scfm_lib.analysis.power.
from scfm_lib.analysis.power import detectable_effect, paired_t_power, seeds_for_power  # noqa: F401


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


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]
