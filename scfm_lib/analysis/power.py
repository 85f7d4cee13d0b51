"""Power of the seed-paired t-test: the power for an effect, the smallest detectable effect, and
the seeds an effect needs.

The test is the two-sided paired t-test of :mod:`scfm_lib.analysis.endpoints` (n seeds, n - 1
degrees of freedom); power comes from the noncentral t distribution. The verdict quotes
:func:`detectable_effect` when D's interval is inconclusive, and the masking chapter the seeds an
effect of the equivalence margin would need.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy import stats as sps


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
