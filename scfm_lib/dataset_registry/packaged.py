"""Registry entries whose files ship inside installed packages (scanpy, celltypist): a count table,
a reduced PBMC set and two gene tables (Ensembl ID to symbol, human to mouse orthologs).
"""

from __future__ import annotations

from scfm_lib.dataset_registry.entry import Dataset, RegisteredFile, register

#: Files shipped with celltypist, published in its repository at the release the project pins.
CELLTYPIST_SAMPLES = "https://raw.githubusercontent.com/Teichlab/celltypist/v1.7.1/celltypist/data/samples/"
register(
    Dataset(
        name="pbmc68k_reduced",
        title="68k PBMCs (10x Genomics), 700-cell reduced subset shipped with scanpy",
        files=(
            RegisteredFile(
                "10x_pbmc68k_reduced.h5ad",
                "e71d41e737c941559b7c57c9243bdb3d2c889c2adfdf00e3422ac6b46783676f",
                "https://raw.githubusercontent.com/scverse/scanpy/1.11.5/src/scanpy/datasets/10x_pbmc68k_reduced.h5ad",
            ),
        ),
        reader="h5ad",
        reader_kwargs={
            "counts": None,
            "obs_map": {"cell_type": "bulk_labels"},
            "no_counts_reason": "pbmc68k_reduced stores only scaled values in X and log-normalized "
            "values in raw.X, for 765 selected genes",
        },
        holds="700 PBMCs x 765 genes: scaled values (X) and log1p-normalized values (raw.X); no raw counts. "
        "Labels: bulk_labels (10 sorted-population labels), louvain clusters, cell-cycle phase.",
        citation="Zheng et al. (2017) Massively parallel digital transcriptional profiling of single cells. "
        "Nat Commun 8:14049; subset by the scanpy authors (Wolf et al. 2018, Genome Biol 19:15).",
        license="CC BY 4.0 (10x Genomics public dataset); BSD-3-Clause (scanpy)",
        cells=700,
        genes=765,
        labels=("cell_type",),
        has_counts=False,
        n_labels=10,
        package="scanpy",
        package_dir="datasets",
    )
)

register(
    Dataset(
        name="celltypist_sample",
        title="CellTypist's sample count table (immune cells, 559 cells)",
        files=(
            RegisteredFile(
                "sample_cell_by_gene.csv",
                "0d729bd7a9e4d8f5a8ccc167f222530f4ece8d334b939d21b796bd77daf967f2",
                CELLTYPIST_SAMPLES + "sample_cell_by_gene.csv",
            ),
        ),
        reader="count_table",
        holds="559 cells x 32,786 genes (symbols), raw UMI counts written as floats (some as 0.999999999999999, "
        "rounded on read); no labels, no donor or batch.",
        citation="Dominguez Conde et al. (2022) Cross-tissue immune cell analysis reveals tissue-specific "
        "features in humans. Science 376:eabl5197 (CellTypist).",
        license="MIT (celltypist package)",
        cells=559,
        genes=32786,
        package="celltypist",
        package_dir="data/samples",
    )
)

register(
    Dataset(
        name="gencode_v44_id2name",
        title="GENCODE v44 human gene ID to gene symbol table (shipped with celltypist)",
        files=(
            RegisteredFile(
                "GENCODEv44_Gene_id2name.csv",
                "0a8d9b07cf63f9ef70e65f3c7afc9d2092a7d9890281172df770003827912f53",
                CELLTYPIST_SAMPLES + "GENCODEv44_Gene_id2name.csv",
            ),
        ),
        reader="mapping",
        holds="62,754 rows: Ensembl gene ID (unversioned), gene symbol; no header.",
        citation="Frankish et al. (2023) GENCODE: reference annotation for the human and mouse genomes. NAR 51:D942.",
        license="GENCODE data: open (EMBL-EBI terms of use); MIT (celltypist package)",
        package="celltypist",
        package_dir="data/samples",
    )
)

register(
    Dataset(
        name="ensembl105_human2mouse",
        title="Ensembl 105 human to mouse ortholog symbols (shipped with celltypist)",
        files=(
            RegisteredFile(
                "Ensembl105_Human2Mouse_Genes.csv",
                "4a174c83cfa70aad7c470d8e453fda94d8fb5d70f8a2f0ae196d54c9e31369f1",
                CELLTYPIST_SAMPLES + "Ensembl105_Human2Mouse_Genes.csv",
            ),
        ),
        reader="mapping",
        holds="47,164 rows: human symbol, mouse ortholog symbol (empty when none); no header.",
        citation="Cunningham et al. (2022) Ensembl 2022. NAR 50:D988.",
        license="Ensembl data: no restrictions; MIT (celltypist package)",
        package="celltypist",
        package_dir="data/samples",
    )
)
