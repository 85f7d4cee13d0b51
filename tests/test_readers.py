"""Every reader of scfm_lib.readers on a small file written here lands in the same layout."""

import gzip

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from scfm_lib import readers
from scfm_lib.data import GeneVocab, ScfmDataError, tokenize, validate_counts

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

N_CELLS, N_GENES = 6, 5
CELLS = [f"AAAC-{i}" for i in range(N_CELLS)]
SYMBOLS = ["CD3E", "MS4A1", "LYZ", "NKG7", "GNLY"]
IDS = [f"ENSG0000000000{i}" for i in range(N_GENES)]
LABELS = ["T", "T", "B", "B", "Mono", "NK"]
BATCHES = ["b1", "b1", "b1", "b2", "b2", "b2"]


@pytest.fixture
def counts() -> np.ndarray:
    """A cells x genes integer matrix with zeros, a large value and an all-zero gene column."""
    rng = np.random.default_rng(0)
    matrix = rng.poisson(2.0, (N_CELLS, N_GENES)).astype(np.int64)
    matrix[0, 0] = 1234
    matrix[:, 3] = 0
    matrix[1, 3] = 7
    matrix[2, :] = 0
    matrix[2, 1] = 1
    return matrix


def assert_layout(adata, expected, dataset, reader, var_names=SYMBOLS, obs_names=CELLS):
    counts = adata.layers["counts"]
    assert sp.issparse(counts) and counts.format == "csr"
    assert counts.dtype == np.float32
    np.testing.assert_array_equal(counts.data, np.round(counts.data))
    np.testing.assert_array_equal(counts.toarray(), np.asarray(expected, dtype=np.float32))
    np.testing.assert_array_equal(sp.csr_matrix(adata.X).toarray(), counts.toarray())
    assert list(adata.obs["dataset"].astype(str)) == [dataset] * adata.n_obs
    assert list(adata.var_names) == list(var_names)
    assert list(adata.obs_names) == list(obs_names)
    assert adata.uns["scfm"]["reader"] == reader
    assert adata.uns["scfm"]["values"] == "counts"
    validate_counts(adata)


# ------------------------------------------------------------------------------ h5ad
def _obs():
    return pd.DataFrame({"celltype": LABELS, "sample": BATCHES}, index=CELLS)


def _write_h5ad(path, X, raw=None, layers=None):
    adata = ad.AnnData(X=X, obs=_obs(), var=pd.DataFrame(index=SYMBOLS), layers=layers or {})
    if raw is not None:
        adata.raw = ad.AnnData(X=raw, obs=_obs(), var=pd.DataFrame(index=SYMBOLS))
    adata.write_h5ad(path)
    return path


def test_h5ad_counts_in_x(tmp_path, counts):
    path = _write_h5ad(tmp_path / "x.h5ad", counts.astype(np.float32))
    out = readers.read_h5ad(path, "ds", counts="X", obs_map={"cell_type": "celltype", "batch": "sample"})
    assert_layout(out, counts, "ds", "h5ad")
    assert list(out.obs["cell_type"].astype(str)) == LABELS
    assert list(out.obs["batch"].astype(str)) == BATCHES
    assert out.uns["scfm"]["file"] == "x.h5ad"


def test_h5ad_counts_in_raw(tmp_path, counts):
    logged = np.log1p(counts).astype(np.float32)
    path = _write_h5ad(tmp_path / "raw.h5ad", logged, raw=sp.csr_matrix(counts.astype(np.float32)))
    out = readers.read_h5ad(path, "ds", counts="raw.X", obs_map={"cell_type": "celltype"})
    assert_layout(out, counts, "ds", "h5ad")
    assert list(out.obs["cell_type"].astype(str)) == LABELS
    # the log values in X would fail as counts
    with pytest.raises(ScfmDataError, match="non-integer"):
        readers.read_h5ad(path, "ds", counts="X")


def test_h5ad_counts_in_layer(tmp_path, counts):
    path = _write_h5ad(
        tmp_path / "layer.h5ad",
        np.log1p(counts).astype(np.float32),
        layers={"raw_counts": sp.csc_matrix(counts.astype(np.int32))},
    )
    out = readers.read_h5ad(path, "ds", counts="layers/raw_counts")
    assert_layout(out, counts, "ds", "h5ad")


def test_h5ad_missing_layer_or_raw_errors_clearly(tmp_path, counts):
    path = _write_h5ad(tmp_path / "x.h5ad", counts.astype(np.float32), layers={"spliced": counts.astype(np.float32)})
    with pytest.raises(ScfmDataError, match=r"layer 'counts' not found \(layers: \['spliced'\]\)"):
        readers.read_h5ad(path, "ds")  # default counts="layers/counts"
    with pytest.raises(ScfmDataError, match="has no .raw"):
        readers.read_h5ad(path, "ds", counts="raw.X")
    with pytest.raises(ScfmDataError, match="counts='obsm/X'"):
        readers.read_h5ad(path, "ds", counts="obsm/X")
    with pytest.raises(ScfmDataError, match=r"obs column 'nope' \(for 'cell_type'\) not found"):
        readers.read_h5ad(path, "ds", counts="X", obs_map={"cell_type": "nope"})
    with pytest.raises(ScfmDataError, match="not a standard column"):
        readers.read_h5ad(path, "ds", counts="X", obs_map={"celltype": "celltype"})


def test_h5ad_without_counts_is_refused_with_its_reason(tmp_path, counts):
    logged = np.log1p(counts).astype(np.float32)
    scaled = (logged - logged.mean(0)) / (logged.std(0) + 1)  # negative entries
    path = _write_h5ad(tmp_path / "norm.h5ad", scaled, raw=logged)
    out = readers.read_h5ad(
        path,
        "norm",
        counts=None,
        obs_map={"cell_type": "celltype"},
        no_counts_reason="only log-normalized values were published",
    )
    assert "counts" not in out.layers
    np.testing.assert_allclose(out.layers["log1p_norm"].toarray(), logged)  # raw.X, not the scaled X
    assert out.uns["scfm"]["values"] == "log1p_norm"
    assert out.uns["scfm"]["no_counts_reason"] == "only log-normalized values were published"
    assert list(out.obs["cell_type"].astype(str)) == LABELS
    assert list(out.obs["dataset"].astype(str)) == ["norm"] * N_CELLS
    vocab = GeneVocab(SYMBOLS)
    for refuse in (lambda: validate_counts(out), lambda: tokenize(out, vocab, context_genes=3, layer="counts")):
        with pytest.raises(ScfmDataError, match="no raw counts .only log-normalized values were published"):
            refuse()
    tokens = tokenize(out, vocab, context_genes=3, layer="log1p_norm")  # the documented alternative works
    assert tokens.gene_ids.shape == (N_CELLS, 3)
    # default reason names the file; a missing obs_map column is an ScfmDataError, not a KeyError
    default = readers.read_h5ad(path, "norm", counts=None)
    assert default.uns["scfm"]["no_counts_reason"] == "norm.h5ad holds no raw counts"
    with pytest.raises(ScfmDataError, match=r"obs column 'nope' \(for 'cell_type'\) not found"):
        readers.read_h5ad(path, "norm", counts=None, obs_map={"cell_type": "nope"})
    # only scaled values and no raw: refused
    scaled_only = _write_h5ad(tmp_path / "scaled.h5ad", scaled)
    with pytest.raises(ScfmDataError, match="scaled"):
        readers.read_h5ad(scaled_only, "norm", counts=None)


# ------------------------------------------------------------------------------ 10x
FEATURE_IDS = IDS + ["ADT_CD3"]
FEATURE_NAMES = SYMBOLS + ["CD3_TotalSeqB"]
FEATURE_TYPES = ["Gene Expression"] * N_GENES + ["Antibody Capture"]


def _with_antibody(counts):
    """The cells x features matrix a Cell Ranger run with one antibody feature writes."""
    return np.hstack([counts, np.full((N_CELLS, 1), 50, dtype=counts.dtype)])


def test_read_10x_mtx_folder(tmp_path, counts):
    folder = tmp_path / "filtered_feature_bc_matrix"
    folder.mkdir()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:  # genes x cells
        scipy.io.mmwrite(fh, sp.coo_matrix(_with_antibody(counts).T))
    features = pd.DataFrame({"id": FEATURE_IDS, "name": FEATURE_NAMES, "type": FEATURE_TYPES})
    features.to_csv(folder / "features.tsv.gz", sep="\t", header=False, index=False)
    pd.Series(CELLS).to_csv(folder / "barcodes.tsv.gz", sep="\t", header=False, index=False)

    out = readers.read_10x(folder, "tenx")
    assert_layout(out, counts, "tenx", "10x_mtx")  # antibody feature dropped
    by_id = readers.read(folder, "10x", dataset="tenx", var_names="gene_ids")
    assert_layout(by_id, counts, "tenx", "10x_mtx", var_names=IDS)


def _write_10x_h5(path, counts):
    matrix = sp.csr_matrix(_with_antibody(counts))  # cells x features CSR == features x cells CSC
    with h5py.File(path, "w") as fh:
        group = fh.create_group("matrix")
        group.create_dataset("data", data=matrix.data.astype(np.int32))
        group.create_dataset("indices", data=matrix.indices.astype(np.int64))
        group.create_dataset("indptr", data=matrix.indptr.astype(np.int64))
        group.create_dataset("shape", data=np.array([matrix.shape[1], matrix.shape[0]], dtype=np.int32))
        group.create_dataset("barcodes", data=np.array(CELLS, dtype="S"))
        features = group.create_group("features")
        features.create_dataset("id", data=np.array(FEATURE_IDS, dtype="S"))
        features.create_dataset("name", data=np.array(FEATURE_NAMES, dtype="S"))
        features.create_dataset("feature_type", data=np.array(FEATURE_TYPES, dtype="S"))
        features.create_dataset("genome", data=np.array(["GRCh38"] * len(FEATURE_IDS), dtype="S"))
    return path


def test_read_10x_h5(tmp_path, counts):
    path = _write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5", counts)
    out = readers.read_10x(path, "tenx")
    assert_layout(out, counts, "tenx", "10x_h5")
    assert list(out.var["gene_ids"]) == IDS
    by_id = readers.read_10x(path, "tenx", var_names="gene_ids")
    assert_layout(by_id, counts, "tenx", "10x_h5", var_names=IDS)


def test_read_10x_rejects_other_paths(tmp_path):
    other = tmp_path / "matrix.csv"
    other.write_text("a,b\n")
    with pytest.raises(ScfmDataError, match="matrix folder"):
        readers.read_10x(other, "tenx")


# ------------------------------------------------------------------------------ deep-clustering HDF5
def test_read_hdf5_counts_dense(tmp_path, counts):
    path = tmp_path / "10X_PBMC.h5"
    with h5py.File(path, "w") as fh:
        fh["X"] = counts.astype(np.float64)  # dense cells x genes
        fh["Y"] = np.array([0, 0, 1, 1, 2, 3])  # integer labels
    out = readers.read_hdf5_counts(path, "dc")
    assert_layout(
        out,
        counts,
        "dc",
        "hdf5_counts",
        var_names=[f"gene_{i}" for i in range(N_GENES)],
        obs_names=[f"cell_{i}" for i in range(N_CELLS)],
    )
    assert list(out.obs["cell_type"].astype(str)) == ["0", "0", "1", "1", "2", "3"]


def test_read_hdf5_counts_sparse_groups_and_names(tmp_path, counts):
    csr = sp.csr_matrix(counts)
    path = tmp_path / "csr.h5"
    with h5py.File(path, "w") as fh:
        group = fh.create_group("exprs")  # shape as a dataset
        group["data"], group["indices"], group["indptr"] = csr.data, csr.indices, csr.indptr
        group["shape"] = np.array(csr.shape)
        fh["obs/cell_type1"] = np.array(LABELS, dtype="S")
        fh["var_names"] = np.array(SYMBOLS, dtype="S")
        fh["obs_names"] = np.array(CELLS, dtype="S")
    out = readers.read_hdf5_counts(
        path, "dc", matrix_key="exprs", label_key="obs/cell_type1", genes_key="var_names", cells_key="obs_names"
    )
    assert_layout(out, counts, "dc", "hdf5_counts")
    assert list(out.obs["cell_type"].astype(str)) == LABELS

    csc = sp.csc_matrix(counts)
    path = tmp_path / "csc.h5"
    with h5py.File(path, "w") as fh:  # anndata-style: shape and encoding in attrs
        group = fh.create_group("X")
        group["data"], group["indices"], group["indptr"] = csc.data, csc.indices, csc.indptr
        group.attrs["shape"] = np.array(csc.shape)
        group.attrs["encoding-type"] = "csc_matrix"
        fh["Y"] = np.array(LABELS, dtype="S")
    out = readers.read_hdf5_counts(path, "dc")
    assert_layout(
        out,
        counts,
        "dc",
        "hdf5_counts",
        var_names=[f"gene_{i}" for i in range(N_GENES)],
        obs_names=[f"cell_{i}" for i in range(N_CELLS)],
    )


def test_read_hdf5_counts_genes_x_cells_and_shape_errors(tmp_path, counts):
    path = tmp_path / "gxc.h5"
    with h5py.File(path, "w") as fh:
        fh["X"] = counts.T.astype(np.int32)  # genes x cells
        fh["Y"] = np.array(LABELS, dtype="S")
        fh["genes"] = np.array(SYMBOLS, dtype="S")
    out = readers.read_hdf5_counts(path, "dc", genes_key="genes", genes_x_cells=True)
    assert_layout(out, counts, "dc", "hdf5_counts", obs_names=[f"cell_{i}" for i in range(N_CELLS)])
    assert list(out.obs["cell_type"].astype(str)) == LABELS
    with pytest.raises(ScfmDataError, match="matrix is 5 x 6 .*genes_x_cells=True"):
        readers.read_hdf5_counts(path, "dc", genes_key="genes")  # forgot the transpose
    with pytest.raises(ScfmDataError, match=r"key\(s\) \['labels'\] not found.*\['X', 'Y', 'genes'\]"):
        readers.read_hdf5_counts(path, "dc", label_key="labels")


# ------------------------------------------------------------------------------ count tables
def test_count_table_csv_cells_x_genes(tmp_path, counts):
    path = tmp_path / "counts.csv"
    pd.DataFrame(counts, index=CELLS, columns=SYMBOLS).to_csv(path)
    assert_layout(readers.read_count_table(path, "tab"), counts, "tab", "count_table")


def test_count_table_tsv_genes_x_cells_with_obs(tmp_path, counts):
    path = tmp_path / "counts.tsv.gz"
    pd.DataFrame(counts.T, index=SYMBOLS, columns=CELLS).to_csv(path, sep="\t")
    labels = _obs().iloc[::-1]  # another order: joined by name
    out = readers.read_count_table(
        path, "tab", genes_x_cells=True, obs=labels, obs_map={"cell_type": "celltype", "batch": "sample"}
    )
    assert_layout(out, counts, "tab", "count_table")
    assert list(out.obs["cell_type"].astype(str)) == LABELS
    assert list(out.obs["batch"].astype(str)) == BATCHES
    with pytest.raises(ScfmDataError, match="1 cells have no row in the obs table"):
        readers.read_count_table(path, "tab", genes_x_cells=True, obs=labels.iloc[1:])
    # a .txt table is read as tab separated, through the read() dispatcher
    txt = tmp_path / "counts.txt"
    pd.DataFrame(counts, index=CELLS, columns=SYMBOLS).to_csv(txt, sep="\t")
    assert_layout(readers.read(txt, "count_table", dataset="tab"), counts, "tab", "count_table")


def test_count_table_rounds_float_error_but_refuses_normalized(tmp_path, counts):
    lines = ["cell," + ",".join(SYMBOLS)]
    for name, row in zip(CELLS, counts):
        values = [f"{v - 1e-15:.15f}" if v == 1 else (f"{v + 1e-9:.10f}" if v == 2 else str(v)) for v in row]
        lines.append(name + "," + ",".join(values))
    path = tmp_path / "floats.csv"
    path.write_text("\n".join(lines) + "\n")
    assert "0.999999999999999" in path.read_text()
    out = readers.read_count_table(path, "tab")
    assert_layout(out, counts, "tab", "count_table")

    normalized = counts / counts.sum(1, keepdims=True).clip(1) * 1e4
    norm_path = tmp_path / "normalized.csv"
    pd.DataFrame(normalized, index=CELLS, columns=SYMBOLS).to_csv(norm_path)
    with pytest.raises(ScfmDataError, match="non-integer values"):
        readers.read_count_table(norm_path, "tab")
    off = counts.astype(float)
    off[0, 1] += 1e-3  # beyond the rounding tolerance
    pd.DataFrame(off, index=CELLS, columns=SYMBOLS).to_csv(norm_path)
    with pytest.raises(ScfmDataError, match="non-integer values"):
        readers.read_count_table(norm_path, "tab")


def test_count_table_refuses_non_numeric_column(tmp_path, counts):
    table = pd.DataFrame(counts, index=CELLS, columns=SYMBOLS)
    table.insert(2, "label", LABELS)
    path = tmp_path / "mixed.csv"
    table.to_csv(path)
    with pytest.raises(ScfmDataError, match=r"non-numeric column\(s\) \['label'\]"):
        readers.read_count_table(path, "tab")


def test_read_dispatch_errors(tmp_path):
    with pytest.raises(ScfmDataError, match="unknown reader 'loom'"):
        readers.read(tmp_path / "x.loom", "loom", dataset="x")
    with pytest.raises(ScfmDataError, match="does not exist"):
        readers.read(tmp_path / "absent.csv", "count_table", dataset="x")


# ------------------------------------------------------------------------------ concat
def test_concat_union_of_genes_with_zeros(tmp_path, counts):
    a_path, b_path = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame(counts, index=CELLS, columns=SYMBOLS).to_csv(a_path)
    b_genes = ["GNLY", "PPBP", "CD3E"]  # two shared (other order), one new
    b_counts = np.array([[1, 2, 3], [4, 0, 6], [0, 8, 0]])
    pd.DataFrame(b_counts, index=["x1", "x2", "x3"], columns=b_genes).to_csv(b_path)
    a = readers.read_count_table(a_path, "a", obs=_obs(), obs_map={"cell_type": "celltype"})
    b = readers.read_count_table(b_path, "b")

    out = readers.concat([a, b])
    genes = SYMBOLS + ["PPBP"]
    assert list(out.var_names) == genes
    expected = np.zeros((N_CELLS + 3, len(genes)))
    expected[:N_CELLS, :N_GENES] = counts
    for j, gene in enumerate(b_genes):
        expected[N_CELLS:, genes.index(gene)] = b_counts[:, j]
    np.testing.assert_array_equal(out.layers["counts"].toarray(), expected)
    np.testing.assert_array_equal(sp.csr_matrix(out.X).toarray(), expected)
    assert list(out.obs["dataset"].astype(str)) == ["a"] * N_CELLS + ["b"] * 3
    assert list(out.obs["cell_type"].astype(str)[:N_CELLS]) == LABELS
    assert out.obs["cell_type"][N_CELLS:].isna().all()
    assert out.obs_names.is_unique

    subset = readers.concat([a, b], genes=["PPBP", "LYZ"])  # a given gene list
    np.testing.assert_array_equal(
        subset.layers["counts"].toarray(), np.column_stack([[0] * N_CELLS + [2, 0, 8], list(counts[:, 2]) + [0, 0, 0]])
    )

    norm = readers.read_h5ad(_write_h5ad(tmp_path / "n.h5ad", np.log1p(counts).astype(np.float32)), "n", counts=None)
    with pytest.raises(ScfmDataError, match="no raw counts"):
        readers.concat([a, norm])
