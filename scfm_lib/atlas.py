"""The embedded dataset: a synthetic cell atlas with known biology and realistic technical noise.

Generative model, per cell ``c`` and gene ``g`` (all draws seeded)::

    log rate[c, g] = base[g]                                   # gene baseline, log-normal across genes
                   + sum_p strength[p] * activity[c, p] * member[p, g]   # gene programs the cell uses
                   + tech[technology(c), g] + donor[donor(c), g]         # batch effects, gene-wise
    profile[c]     = softmax_g(log rate[c])                    # expression proportions
    library[c]     ~ LogNormal(log median_library[technology(c)], library_sd)
    counts[c, g]   ~ NegativeBinomial(mean = library[c] * profile[c, g], inverse dispersion theta[g])

Cell identity is hierarchical: lineage > cell type > subtype, each with its own gene program;
tissues hold the immune lineage plus tissue-specific lineages and add a tissue program; one
"cycling" program is switched on in a random share of cells of every type. Every program has
known member genes and a driver gene (its most strongly loaded member), stored in ``uns``.

Cells are generated in chunks whose random streams derive from ``(seed, chunk index)``, so an
atlas of any size streams through memory one chunk at a time. The study's three datasets drawn
from it (corpus, downstream, ood) are made in :mod:`scfm_lib.atlas_datasets`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

LINEAGE_NAMES = ("immune", "epithelial", "stromal", "endothelial", "neural", "germ")


@dataclass
class AtlasConfig:
    """The synthetic atlas's parameters: its genes, cell hierarchy, tissues, batches and noise.

    Each field's comment says what it sets (see the generative model above); a bad combination
    raises ``ValueError`` when built.
    """

    n_genes: int = 2000
    n_lineages: int = 4  # lineage 0 is immune and present in every tissue
    types_per_lineage: int = 3
    subtypes_per_type: int = 2
    # Member genes per program, by level: lineages differ in many genes, subtypes in few.
    lineage_genes: int = 100
    type_genes: int = 40
    subtype_genes: int = 15
    tissue_genes: int = 30
    cycling_genes: int = 40
    marker_bias: float = 1.0  # how strongly program members favour highly expressed genes
    tissues: tuple = ("blood", "lung", "liver", "gut", "skin")
    technologies: tuple = ("tech_A", "tech_B", "tech_C")
    median_library: tuple = (1500.0, 2500.0, 1000.0)  # per technology, median counts per cell
    library_sd: float = 0.35  # log-normal sd of library size within a technology
    n_donors: int = 30
    base_sd: float = 2.2  # sd of gene baselines (log scale): a few genes dominate
    lineage_strength: float = 2.5  # log-fold change of a program's members when it is on
    type_strength: float = 2.0
    subtype_strength: float = 1.2
    tissue_strength: float = 0.8
    cycling_strength: float = 1.5
    cycling_share: float = 0.15  # share of cells with the cycling program on
    activity_sd: float = 0.3  # cell-to-cell variation of program activity (log scale)
    tech_gene_sd: float = 0.4  # gene-wise technology effect (log scale)
    donor_gene_sd: float = 0.15  # gene-wise donor effect (log scale)
    theta_median: float = 2.0  # NB inverse dispersion, log-normal across genes
    composition_concentration: float = 5.0  # Dirichlet concentration of cell-type shares per tissue
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_lineages <= len(LINEAGE_NAMES):
            raise ValueError(f"n_lineages must be in [1, {len(LINEAGE_NAMES)}], got {self.n_lineages}")
        if len(self.median_library) != len(self.technologies):
            raise ValueError(
                "median_library needs one value per technology "
                f"({len(self.technologies)}), got {len(self.median_library)}"
            )
        largest = max(self.lineage_genes, self.type_genes, self.subtype_genes, self.tissue_genes, self.cycling_genes)
        if self.n_genes < largest:
            raise ValueError(f"n_genes ({self.n_genes}) must be at least the largest program ({largest} genes)")
        self.tissues = tuple(self.tissues)
        self.technologies = tuple(self.technologies)
        self.median_library = tuple(float(x) for x in self.median_library)


@dataclass
class _Biology:
    """Everything fixed by the atlas seed: programs, cell types, tissues, batch effects."""

    genes: list[str]
    programs: dict[str, np.ndarray]  # program name -> member gene indices
    drivers: dict[str, int]  # program name -> driver gene index
    loadings: np.ndarray  # [n_programs, n_genes] member weights in [0.5, 1]
    subtypes: pd.DataFrame  # one row per subtype: lineage, cell_type, cell_subtype, program ids
    composition: dict[str, np.ndarray]  # tissue -> share of each subtype (zeros where absent)
    base: np.ndarray  # [n_genes] log baseline
    tech: np.ndarray  # [n_tech, n_genes]
    donor: np.ndarray  # [n_donors, n_genes]
    theta: np.ndarray  # [n_genes]
    program_index: dict[str, int] = field(default_factory=dict)


class SyntheticAtlas:
    """A deterministic atlas: ``sample`` or stream ``iter_chunks`` of cells.

    Cells may come from any tissues, technologies and donors.

    Parameters
    ----------
    config : AtlasConfig, optional
        The atlas's parameters; default ``AtlasConfig()``. Its ``seed`` fixes the biology.
    """

    def __init__(self, config: AtlasConfig | None = None):
        self.config = config or AtlasConfig()
        self.bio = self._make_biology()
        self.donors = [f"D{d:02d}" for d in range(self.config.n_donors)]

    # ---------------------------------------------------------------- fixed biology
    def _make_biology(self) -> _Biology:
        cfg = self.config
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
        genes = [f"G{g:04d}" for g in range(cfg.n_genes)]
        names, sizes, subtype_rows = [], [], []
        lineages = LINEAGE_NAMES[: cfg.n_lineages]
        for lin in lineages:
            names.append(f"lineage_{lin}")
            sizes.append(cfg.lineage_genes)
        for lin in lineages:
            for t in range(cfg.types_per_lineage):
                cell_type = f"{lin}-{t + 1}"
                names.append(f"type_{cell_type}")
                sizes.append(cfg.type_genes)
                for s in range(cfg.subtypes_per_type):
                    subtype = f"{cell_type}{'abcdefgh'[s]}"
                    names.append(f"subtype_{subtype}")
                    sizes.append(cfg.subtype_genes)
                    subtype_rows.append({"lineage": lin, "cell_type": cell_type, "cell_subtype": subtype})
        names += [f"tissue_{t}" for t in cfg.tissues] + ["cycling"]
        sizes += [cfg.tissue_genes] * len(cfg.tissues) + [cfg.cycling_genes]
        base = rng.normal(0.0, cfg.base_sd, cfg.n_genes).astype(np.float32)
        # Members: consecutive blocks of a gene order (wrapping when genes run out), so programs
        # overlap only when the atlas has fewer genes than all programs together. As in
        # real tissues, identity genes are mostly moderately to highly expressed: the order
        # draws genes with probability rising with their baseline (marker_bias = 0: uniform).
        weights = np.exp(cfg.marker_bias * (base - base.mean()) / cfg.base_sd)
        order = rng.choice(cfg.n_genes, size=cfg.n_genes, replace=False, p=weights / weights.sum())
        programs, drivers = {}, {}
        loadings = np.zeros((len(names), cfg.n_genes), dtype=np.float32)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        for p, (name, start, size) in enumerate(zip(names, starts, sizes)):
            members = order[np.arange(start, start + size) % cfg.n_genes]
            weights = rng.uniform(0.5, 1.0, size=len(members))
            weights[0] = 1.0  # the driver: the most strongly loaded member
            programs[name] = np.sort(members)
            drivers[name] = int(members[0])
            loadings[p, members] = weights
        program_index = {name: p for p, name in enumerate(names)}
        subtypes = pd.DataFrame(subtype_rows)
        # Tissues: every tissue holds the immune lineage plus two tissue-specific lineages.
        composition = {}
        for t, tissue in enumerate(cfg.tissues):
            allowed = {lineages[0]}
            if cfg.n_lineages > 1:
                others = lineages[1:]
                allowed |= {others[t % len(others)], others[(t + 1) % len(others)]}
            shares = rng.dirichlet(np.full(len(subtypes), cfg.composition_concentration))
            shares = np.where(subtypes["lineage"].isin(allowed), shares, 0.0)
            composition[tissue] = shares / shares.sum()
        return _Biology(
            genes=genes,
            programs=programs,
            drivers=drivers,
            loadings=loadings,
            subtypes=subtypes,
            composition=composition,
            program_index=program_index,
            base=base,
            tech=rng.normal(0.0, cfg.tech_gene_sd, (len(cfg.technologies), cfg.n_genes)).astype(np.float32),
            donor=rng.normal(0.0, cfg.donor_gene_sd, (cfg.n_donors, cfg.n_genes)).astype(np.float32),
            theta=np.exp(rng.normal(np.log(cfg.theta_median), 0.5, cfg.n_genes)).astype(np.float32),
        )

    # ---------------------------------------------------------------- cells
    def _chunk(
        self,
        n: int,
        rng: np.random.Generator,
        tissues: Sequence[str],
        technologies: Sequence[str],
        donors: Sequence[str],
        names: list[str],
    ) -> ad.AnnData:
        cfg, bio = self.config, self.bio
        tissue = rng.choice(np.asarray(tissues), size=n)
        donor = rng.choice(np.asarray(donors), size=n)
        # Each donor is sequenced with one technology: batch = donor x technology.
        donor_tech = {d: technologies[self.donors.index(d) % len(technologies)] for d in donors}
        technology = np.array([donor_tech[d] for d in donor])
        subtype_id = np.empty(n, dtype=np.int64)
        for t in np.unique(tissue):
            at = tissue == t
            subtype_id[at] = rng.choice(len(bio.subtypes), size=at.sum(), p=bio.composition[t])
        st = bio.subtypes.iloc[subtype_id]
        # Program activities [n, n_programs]
        activity = np.zeros((n, len(bio.program_index)), dtype=np.float32)
        rows = np.arange(n)
        for column, prefix, strength in (
            ("lineage", "lineage_", cfg.lineage_strength),
            ("cell_type", "type_", cfg.type_strength),
            ("cell_subtype", "subtype_", cfg.subtype_strength),
        ):
            ids = np.array([bio.program_index[prefix + v] for v in st[column]])
            activity[rows, ids] = strength
        activity[rows, [bio.program_index[f"tissue_{t}"] for t in tissue]] = cfg.tissue_strength
        cycling = rng.random(n) < cfg.cycling_share
        activity[cycling, bio.program_index["cycling"]] = cfg.cycling_strength
        activity *= np.exp(rng.normal(0.0, cfg.activity_sd, activity.shape)).astype(np.float32)
        tech_id = np.array([cfg.technologies.index(t) for t in technology])
        donor_id = np.array([self.donors.index(d) for d in donor])
        log_rate = bio.base + activity @ bio.loadings + bio.tech[tech_id] + bio.donor[donor_id]  # [n, G]
        log_rate -= log_rate.max(1, keepdims=True)
        profile = np.exp(log_rate)
        profile /= profile.sum(1, keepdims=True)
        median = np.asarray(cfg.median_library)[tech_id]
        library = np.exp(rng.normal(np.log(median), cfg.library_sd))
        mean = profile * library[:, None]
        # Negative binomial as a gamma-Poisson mixture.
        counts = rng.poisson(rng.gamma(bio.theta, mean / bio.theta)).astype(np.int32)
        obs = pd.DataFrame(
            {
                "tissue": tissue,
                "lineage": st["lineage"].values,
                "cell_type": st["cell_type"].values,
                "cell_subtype": st["cell_subtype"].values,
                "donor": donor,
                "technology": technology,
                "batch": [f"{d}_{t}" for d, t in zip(donor, technology)],
            },
            index=names,
        )
        return self._to_anndata(sp.csr_matrix(counts), obs)

    def _to_anndata(self, counts: sp.csr_matrix, obs: pd.DataFrame) -> ad.AnnData:
        bio = self.bio
        for column in obs.columns:
            obs[column] = pd.Categorical(obs[column])
        adata = ad.AnnData(X=counts.copy(), obs=obs, var=pd.DataFrame(index=bio.genes))
        adata.layers["counts"] = counts
        adata.uns["gene_programs"] = {p: [bio.genes[g] for g in members] for p, members in bio.programs.items()}
        adata.uns["program_drivers"] = {p: bio.genes[g] for p, g in bio.drivers.items()}
        adata.uns["atlas_config"] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.config).items()
        }
        return adata

    def _check_choices(self, tissues, technologies, donors):
        cfg = self.config
        tissues = list(tissues or cfg.tissues)
        technologies = list(technologies or cfg.technologies)
        donors = list(donors or self.donors)
        for kind, chosen, known in (
            ("tissue", tissues, cfg.tissues),
            ("technology", technologies, cfg.technologies),
            ("donor", donors, self.donors),
        ):
            unknown = sorted(set(chosen) - set(known))
            if unknown:
                raise ValueError(f"unknown {kind}(s) {unknown}; the atlas has {list(known)}")
        return tissues, technologies, donors

    def iter_chunks(
        self,
        n_cells: int,
        *,
        tissues: Sequence[str] | None = None,
        technologies: Sequence[str] | None = None,
        donors: Sequence[str] | None = None,
        seed: int = 0,
        name_prefix: str = "cell",
        chunk_size: int = 10000,
    ) -> Iterator[ad.AnnData]:
        """Yield AnnData chunks of at most ``chunk_size`` cells; together they are ``sample(...)``.

        Parameters
        ----------
        n_cells : int
            Cells in all, >= 1.
        tissues, technologies, donors : sequence of str, optional
            The cells' possible tissues, technologies and donors; default all of the atlas's.
        seed : int
            Seed of the cells (the biology is fixed by the config's seed).
        name_prefix : str
            Cell names are ``<name_prefix>-<i>`` with a 7-digit index.
        chunk_size : int
            Cells per chunk.

        Yields
        ------
        anndata.AnnData
            Up to ``chunk_size`` cells: counts in ``X`` and ``layers["counts"]``, ``obs`` columns
            ``tissue``, ``lineage``, ``cell_type``, ``cell_subtype``, ``donor``, ``technology``,
            ``batch``; ``uns`` holds ``gene_programs``, ``program_drivers`` and ``atlas_config``.

        Raises
        ------
        ValueError
            When ``n_cells < 1`` or a tissue, technology or donor is not the atlas's.
        """
        if n_cells < 1:
            raise ValueError(f"n_cells must be >= 1, got {n_cells}")
        tissues, technologies, donors = self._check_choices(tissues, technologies, donors)
        for chunk, start in enumerate(range(0, n_cells, chunk_size)):
            n = min(chunk_size, n_cells - start)
            rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, 1, seed, chunk]))
            names = [f"{name_prefix}-{i:07d}" for i in range(start, start + n)]
            yield self._chunk(n, rng, tissues, technologies, donors, names)

    def sample(self, n_cells: int, **kwargs: Any) -> ad.AnnData:
        """``n_cells`` cells as one AnnData (concatenation of :meth:`iter_chunks`).

        Parameters
        ----------
        n_cells : int
            Cells, >= 1.
        **kwargs
            The options of :meth:`iter_chunks`.

        Returns
        -------
        anndata.AnnData
            Shape ``(n_cells, n_genes)``, laid out as :meth:`iter_chunks`'s chunks.
        """
        chunks = list(self.iter_chunks(n_cells, **kwargs))
        if len(chunks) == 1:
            return chunks[0]
        counts = sp.vstack([c.layers["counts"] for c in chunks]).tocsr()
        obs = pd.concat([c.obs.astype(str) for c in chunks])
        return self._to_anndata(counts, obs)
