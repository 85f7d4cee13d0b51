"""The study's three datasets drawn from the synthetic atlas: pretraining corpus, downstream, ood.

:func:`make_study_datasets` splits the atlas's donors (and technologies, and optionally tissues)
so that the datasets never overlap; :func:`corpus_tissues_without` names the corpus's tissues once
some are held out. The atlas itself is :mod:`scfm_lib.atlas`.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad

from scfm_lib.atlas import AtlasConfig, SyntheticAtlas


def corpus_tissues_without(config: AtlasConfig, heldout_tissues: Sequence[str]) -> list[str]:
    """The atlas tissues the corpus draws from once ``heldout_tissues`` are left out.

    Parameters
    ----------
    config : AtlasConfig
        The atlas's parameters.
    heldout_tissues : sequence of str
        Distinct atlas tissues kept out of the corpus.

    Returns
    -------
    list of str
        The remaining tissues, in the config's order (at least one).

    Raises
    ------
    ValueError
        When ``heldout_tissues`` are not distinct atlas tissues, or leave none.
    """
    held = list(heldout_tissues)
    unknown = [t for t in held if t not in config.tissues]
    if unknown or len(set(held)) != len(held):
        raise ValueError(
            f"data.heldout_tissues {held!r} must list distinct atlas tissues out of "
            f"{list(config.tissues)}" + (f"; unknown: {unknown}" if unknown else "")
        )
    if len(held) >= len(config.tissues):
        raise ValueError(
            f"data.heldout_tissues {held!r} leaves no tissue for the pretraining corpus; hold out fewer tissues"
        )
    return [t for t in config.tissues if t not in held]


def make_study_datasets(
    config: AtlasConfig,
    n_corpus: int,
    n_downstream: int,
    n_ood: int,
    seed: int = 0,
    heldout_tissues: Sequence[str] = (),
) -> dict[str, ad.AnnData]:
    """The study's three datasets, drawn from one atlas without overlap.

    - ``corpus``: pretraining corpus, the first half of the donors, technologies except the last,
      every tissue except ``heldout_tissues`` (the downstream cells of those are an unseen tissue);
    - ``downstream``: held-out donors (the next 30%) with the corpus technologies, several
      batches, for annotation (enough donors that a split by donor leaves >= 2 in test);
    - ``ood``: the remaining donors, sequenced with the last technology, never in the corpus.

    No overlap: the donor sets are disjoint, each dataset has its own random stream (seed) and
    its own cell-name prefix.

    Parameters
    ----------
    config : AtlasConfig
        The atlas's parameters (>= 8 donors, >= 2 technologies).
    n_corpus, n_downstream, n_ood : int
        Cells of each dataset.
    seed : int
        Seed of the cells (each dataset its own stream derived from it).
    heldout_tissues : sequence of str
        Tissues kept out of the corpus.

    Returns
    -------
    dict of str to anndata.AnnData
        ``"corpus"``, ``"downstream"`` and ``"ood"``.

    Raises
    ------
    ValueError
        When the config has fewer than 8 donors or 2 technologies, or ``heldout_tissues`` is bad.
    """
    if config.n_donors < 8:
        raise ValueError(f"make_study_datasets needs n_donors >= 8 to hold out donors, got {config.n_donors}")
    if len(config.technologies) < 2:
        raise ValueError("make_study_datasets needs >= 2 technologies: the last is held out for 'ood'")
    atlas = SyntheticAtlas(config)
    n_corpus_donors = int(0.5 * config.n_donors)
    n_down_donors = int(0.3 * config.n_donors)
    corpus_donors = atlas.donors[:n_corpus_donors]
    down_donors = atlas.donors[n_corpus_donors : n_corpus_donors + n_down_donors]
    ood_donors = atlas.donors[n_corpus_donors + n_down_donors :]
    seen_tech, unseen_tech = list(config.technologies[:-1]), [config.technologies[-1]]
    corpus_tissues = corpus_tissues_without(config, heldout_tissues)
    return {
        "corpus": atlas.sample(
            n_corpus,
            donors=corpus_donors,
            technologies=seen_tech,
            tissues=corpus_tissues,
            seed=3 * seed,
            name_prefix="corpus",
        ),
        "downstream": atlas.sample(
            n_downstream, donors=down_donors, technologies=seen_tech, seed=3 * seed + 1, name_prefix="downstream"
        ),
        "ood": atlas.sample(n_ood, donors=ood_donors, technologies=unseen_tech, seed=3 * seed + 2, name_prefix="ood"),
    }
