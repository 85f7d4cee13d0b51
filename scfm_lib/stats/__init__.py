"""The masking statistic: sensitivity to corpus size, spread, masking index, bootstrap CIs.

All functions take the tidy table of :func:`scfm_lib.results.load_records` (columns ``mode``,
``metric``, ``fraction``, ``seed``, ``n_cells``, ``value``), or the rows of one *series* (one
mode and one metric over the grid of fractions x seeds).

Definitions (the book's masking chapter states the same):

- **slope** ``S``: OLS slope of the value against ``log10(n_cells)`` over pretrained runs
  (``n_cells > 0``): change per tenfold more pretraining cells. The random-init control
  (``n_cells == 0``) has no logarithm and is reported beside it.
- **spread**: mean over seeds per fraction; best fraction minus worst, control included. >= 0.
- **masking index** ``M = (S_frozen - S_ft) / (S_frozen + |S_ft|)`` in [-1, 1], defined when the
  frozen representation gains from corpus size (``S_frozen > 0``), NaN otherwise: 1 = finetuning
  gains nothing from scale, 0 = it gains as much as the frozen representation, negative = more.
- **confidence intervals**: percentile bootstrap over seeds, resampling *whole seeds* with
  replacement: a seed is one block (the same initialization, nested data and finetuning seed at
  every fraction), so its scores at all fractions travel together and the pairing survives; for
  the masking index the two modes are resampled together as well. The study's primary endpoint
  (the seed-paired gain and D, :mod:`scfm_lib.analysis.endpoints`) uses t-intervals over seeds.

Rooms: ``masking`` (slope, spread, masking index, bootstrap over seeds, summaries), ``inference``
(equivalence, p-values, multiplicity, cell bootstrap), ``budget`` (the label x step budget grid).
"""

from scfm_lib.stats.budget import budget_cell_records, budget_cells, budget_grid
from scfm_lib.stats.inference import (
    _benjamini_hochberg,
    _holm,
    _percentile_interval,
    _slope_draws,
    adjust_pvalues,
    bootstrap_pvalue_slope,
    cell_bootstrap_ci,
    slope_equivalence,
)
from scfm_lib.stats.masking import (
    _paired,
    _resample_seeds,
    _seed_blocks,
    bootstrap_over_seeds,
    masking_index,
    paired_masking_index,
    series_summary,
    size_slope,
    size_table,
    spread,
    summarize_masking,
)
