"""The inventory of bad inputs: every one is refused at the entry point a user calls, with an error
that names the problem and the fix, and nothing is written.

``CASES`` *is* the inventory: one row per bad input (id, the entry point called, the error
type, a phrase naming the problem, a phrase naming the fix). Each row's ``prepare`` builds the
input in a temp folder and returns the user's call; the test snapshots the folder, runs the call
and checks that the folder is unchanged (no result, no stray temp file). ``added`` marks the rows
whose check, or whose fix in the message, was added with this inventory (before it, the input
passed, or failed without saying what to do). Inputs accepted on purpose (never-detected genes)
are tested at the end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from scfm_lib import data, genes, readers, results, train
from scfm_lib.config import ConfigError, Run, check_notebook_parameters, load_profile
from scfm_lib.data import GeneVocab, ScfmDataError
from scfm_lib.model import ScFMConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

GENES = ["CD3E", "MS4A1", "LYZ", "NKG7", "GNLY", "CD14"]
IDS = [f"ENSG0000010000{i}" for i in range(len(GENES))]
COUNTS = np.array([[3, 0, 1, 0, 2, 1], [0, 2, 0, 5, 1, 0], [1, 1, 1, 1, 0, 4], [7, 0, 0, 2, 0, 1]])
LABELS = ["T", "B", "Mono", "T"]


class Case(NamedTuple):
    id: str
    prepare: Callable[[Path], Callable[[], object]]  # tmp folder -> the user's call
    error: type
    problem: str  # a phrase of the message that names the problem
    fix: str  # ... and one that names the fix
    added: bool = False  # the check (or its fix) came with this inventory


def adata(counts=COUNTS, genes_=GENES, labels=LABELS, layer="counts", dense=False):
    counts = np.asarray(counts, dtype=np.float64)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(labels), "batch": ["b1", "b1", "b2", "b2"][: len(counts)]},
        index=[f"cell{i}" for i in range(len(counts))],
    )
    matrix = counts if dense else sp.csr_matrix(counts)
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=list(genes_)), layers={layer: matrix})


def with_counts(values, dense=False):
    return adata(values, dense=dense)


def tokenize_and_save(a, vocab_genes=GENES, layer="counts"):
    """The data job's path: tokenize for the model, then write the tokens (never reached here)."""

    def call(tmp):
        def run():
            data.tokenize(a, GeneVocab(vocab_genes), context_genes=4, layer=layer).save(tmp / "tokens.npz")

        return run

    return call


def validate_then_save(a, **kwargs):
    def call(tmp):
        def run():
            data.validate(a, **kwargs)
            a.write_h5ad(tmp / "validated.h5ad")

        return run

    return call


def mutated(**changes):
    a = adata()
    for name, value in changes.items():
        setattr(a, name, value)
    return a


def nan_labels():
    a = adata()
    a.obs["cell_type"] = pd.Categorical(["T", None, "B", "T"])
    return a


def log1p_only(values):
    a = adata(values, layer="log1p_norm")
    a.uns["scfm"] = {"values": "log1p_norm", "no_counts_reason": "only log-normalized values were published"}
    return a


def empty_cell(layer="counts"):
    counts = COUNTS.astype(float).copy()
    counts[1] = 0
    return adata(np.log1p(counts) if layer == "log1p_norm" else counts, layer=layer)


def mapping_file(tmp, rows):
    path = tmp / "mapping.csv"
    path.write_text("".join(f"{a},{b}\n" for a, b in rows))
    return path


def one_column_mapping_call(tmp):
    path = tmp / "one_column.csv"
    path.write_text("ENSG00000010610\nENSG00000100000\n")
    return lambda: genes.read_mapping(path)


def mouse_mapping_call(tmp):
    id_map = genes.read_mapping(mapping_file(tmp, [("ENSMUSG00000000001", "Cd3e")]))
    return lambda: genes.harmonize_genes(adata(genes_=IDS), id_map=id_map)


# --------------------------------------------------------------------------------------------- profiles
def profile_call(**changes):
    def call(tmp):
        base = {"name": "t", "fractions": [1.0, 0.0], "seeds": [0], "data": {"n_corpus": 100}}
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        path = tmp / "t.yaml"
        path.write_text(yaml.safe_dump(base))
        return lambda: load_profile(path)

    return call


def notebook_call(ranges=None, **values):
    def call(tmp):
        namespace = {
            "__annotations__": {"fraction": float, "seed": int, "max_steps": int | None},
            "fraction": 0.1,
            "seed": 0,
            "max_steps": None,
            "In": [],
            "Out": {},
            **values,
        }
        return lambda: check_notebook_parameters(namespace, ranges=ranges)

    return call


# --------------------------------------------------------------------------------------------- checkpoints
MODEL = ScFMConfig(vocab_size=12, context_genes=4, d_model=16, n_layers=1, n_heads=2)


def checkpoint_call(damage):
    def call(tmp):
        train.init_checkpoint(MODEL, 0, tmp / "ck")
        damage(tmp / "ck")
        return lambda: train.load_checkpoint(tmp / "ck")

    return call


def unpretrained_call(fraction):
    """Evaluating a grid point whose pretraining never ran (scfm_lib.runner.pretrained_checkpoint)."""

    def call(tmp):
        from scfm_lib import runner

        profile = load_profile("tiny")
        return lambda: runner.pretrained_checkpoint(profile, tmp / "results", Run("scgpt", fraction, 0))

    return call


def flip_byte(folder):
    weights = folder / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-10] ^= 0xFF  # still a loadable safetensors file: only the hash can tell
    weights.write_bytes(bytes(raw))


def truncate(name):
    def damage(folder):
        path = folder / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return damage


def remove(name):
    return lambda folder: (folder / name).unlink()


def tokens(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return data.CellTokens(rng.integers(3, 12, (n, 4)).astype(np.int64), rng.random((n, 4)).astype(np.float32))


PRETRAIN = dict(max_steps=4, batch_size=4, warmup_steps=1, eval_every=2, checkpoint_every=2, bf16=False)


def resume_call(change):
    """A finished or unfinished run in the folder, then ``pretrain`` called on it again."""

    def call(tmp):
        train.pretrain(MODEL, tokens(), tokens(4, 1), train.PretrainConfig(**PRETRAIN), tmp / "ck", progress=False)
        cfg = change(tmp / "ck")
        return lambda: train.pretrain(MODEL, tokens(), tokens(4, 1), cfg, tmp / "ck", progress=False)

    return call


def unfinished_with_truncated_state(folder):
    meta = json.loads((folder / "checkpoint.json").read_text())
    (folder / "checkpoint.json").write_text(
        json.dumps({**meta, "step": 2, "finished": False})
    )  # as if killed after step 2
    truncate("trainer_state.pt")(folder)
    return train.PretrainConfig(**PRETRAIN)


# --------------------------------------------------------------------------------------------- readers
def count_table_call(text, **kwargs):
    def call(tmp):
        path = tmp / "table.csv"
        path.write_text(text)
        return lambda: readers.read(path, "count_table", "ds", **kwargs)

    return call


def h5ad_without_counts_call(values):
    def call(tmp):
        path = tmp / "norm.h5ad"
        ad.AnnData(
            X=sp.csr_matrix(values.astype(np.float32)),
            obs=pd.DataFrame(index=[f"c{i}" for i in range(len(values))]),
            var=pd.DataFrame(index=GENES),
        ).write_h5ad(path)
        return lambda: readers.read(path, "h5ad", "ds", counts=None)

    return call


def truncated_tokens_call(mmap):
    """A token file cut short, as a full disk or a killed copy leaves it."""

    def call(tmp):
        path = tmp / "tokens.npz"
        data.tokenize(adata(), GeneVocab(GENES), context_genes=4).save(path)
        path.write_bytes(path.read_bytes()[:200])
        return lambda: data.CellTokens.load(path, mmap=mmap)

    return call


def metrics_call(value):
    def call(tmp):
        return lambda: results.write_metrics(
            results.metrics_path(tmp, "evaluate", "x"),
            kind="evaluate",
            name="x",
            run={},
            records=[{"mode": "knn", "metric": "f1", "value": value}],
            parameters={},
        )

    return call


def plain(func):
    return lambda tmp: func


LOG1P = np.log1p(COUNTS)
CP10K = COUNTS / COUNTS.sum(1, keepdims=True) * 1e4
SCALED = (LOG1P - LOG1P.mean(0)) / LOG1P.std(0)

CASES = [
    # ---- values where raw counts are expected
    Case(
        "counts: log1p values",
        tokenize_and_save(with_counts(LOG1P)),
        ScfmDataError,
        "non-integer",
        "pass raw integer counts",
    ),
    Case(
        "counts: CP10k-normalized floats",
        tokenize_and_save(with_counts(CP10K)),
        ScfmDataError,
        "looks normalized",
        "pass raw integer counts",
    ),
    Case(
        "counts: scaled (negative floats)",
        tokenize_and_save(with_counts(SCALED)),
        ScfmDataError,
        "negative values",
        "not scaled or centred data",
    ),
    Case(
        "counts: negative integers",
        tokenize_and_save(with_counts(COUNTS * np.array([1, -1, 1, 1, 1, 1]))),
        ScfmDataError,
        "negative values",
        "pass raw UMI/read counts",
    ),
    Case(
        "counts: NaN (sparse)",
        tokenize_and_save(with_counts(np.where(COUNTS == 2, np.nan, COUNTS))),
        ScfmDataError,
        "NaN or infinite",
        "drop or re-count",
    ),
    Case(
        "counts: Inf (dense layer)",
        tokenize_and_save(with_counts(np.where(COUNTS == 2, np.inf, COUNTS), dense=True)),
        ScfmDataError,
        "NaN or infinite",
        "drop or re-count",
    ),
    Case(
        "counts: only in X, no counts layer",
        tokenize_and_save(adata(layer="spliced")),
        ScfmDataError,
        "layer 'counts' not found",
        'adata.layers["counts"] = adata.X.copy()',
    ),
    Case(
        "counts: dataset that ships none",
        tokenize_and_save(log1p_only(LOG1P)),
        ScfmDataError,
        "holds no raw counts",
        "layer='log1p_norm'",
    ),
    Case(
        "log1p_norm: NaN",
        validate_then_save(log1p_only(np.where(COUNTS == 2, np.nan, LOG1P))),
        ScfmDataError,
        "found NaN/Inf",
        "store log1p(CP10k) values",
        added=True,
    ),
    Case(
        "log1p_norm: scaled (negative)",
        tokenize_and_save(log1p_only(SCALED), layer="log1p_norm"),
        ScfmDataError,
        "negative values",
        "not the output of sc.pp.scale",
        added=True,
    ),
    # ---- empty and duplicated
    Case(
        "empty cell (counts)",
        tokenize_and_save(empty_cell()),
        ScfmDataError,
        "1 of 4 cells are empty",
        "drop them first",
        added=True,
    ),
    Case(
        "empty cell (log1p_norm)",
        validate_then_save(empty_cell("log1p_norm")),
        ScfmDataError,
        "cells are empty",
        "drop them first",
        added=True,
    ),
    Case(
        "no cells at all",
        tokenize_and_save(adata()[:0].copy()),
        ScfmDataError,
        "the AnnData is empty",
        "check the filtering",
    ),
    Case(
        "duplicated gene names",
        tokenize_and_save(adata(genes_=GENES[:5] + ["CD3E"])),
        ScfmDataError,
        "duplicated gene names",
        "var_names_make_unique",
    ),
    Case(
        "duplicated cell names",
        tokenize_and_save(mutated(obs_names=["c0", "c1", "c0", "c3"])),
        ScfmDataError,
        "duplicated cell names",
        "obs_names_make_unique",
        added=True,
    ),
    Case(
        "duplicated cell names (log1p_norm)",
        validate_then_save(
            ad.AnnData(
                X=LOG1P,
                obs=pd.DataFrame(index=["c0", "c0", "c2", "c3"]),
                var=pd.DataFrame(index=GENES),
                layers={"log1p_norm": sp.csr_matrix(LOG1P)},
            )
        ),
        ScfmDataError,
        "duplicated cell names",
        "obs_names_make_unique",
        added=True,
    ),
    # ---- gene identifiers and vocabulary overlap
    Case(
        "Ensembl IDs, symbol vocabulary",
        tokenize_and_save(adata(genes_=IDS)),
        ScfmDataError,
        "Ensembl IDs, the vocabulary gene symbols",
        "harmonize_genes(adata, id_map=",
        added=True,
    ),
    Case(
        "Ensembl IDs, harmonize without a mapping",
        plain(lambda: genes.harmonize_genes(adata(genes_=IDS))),
        ScfmDataError,
        "the genes are Ensembl IDs",
        "pass id_map",
    ),
    Case(
        "symbols, Ensembl vocabulary",
        tokenize_and_save(adata(), vocab_genes=IDS),
        ScfmDataError,
        "gene symbols, the vocabulary Ensembl IDs",
        "scfm_lib.genes.map_genes",
        added=True,
    ),
    Case(
        "mapping file of another species",
        mouse_mapping_call,
        ScfmDataError,
        "are in the mapping",
        "check that the mapping file matches",
    ),
    Case(
        "mapping file missing",
        plain(lambda: genes.read_mapping("no/such/mapping.csv")),
        ScfmDataError,
        "does not exist",
        "two-column CSV",
        added=True,
    ),
    Case(
        "mapping file with one column",
        one_column_mapping_call,
        ScfmDataError,
        "is not a two-column CSV",
        "one identifier pair per line",
        added=True,
    ),
    Case(
        "symbols in another case (mouse-style)",
        tokenize_and_save(adata(genes_=[g.capitalize() for g in GENES])),
        ScfmDataError,
        "match the vocabulary when case is ignored",
        "map them to the vocabulary's case",
        added=True,
    ),
    Case(
        "versioned Ensembl IDs, unversioned vocabulary",
        tokenize_and_save(adata(genes_=[f"{i}.7" for i in IDS]), vocab_genes=IDS),
        ScfmDataError,
        "once their version suffix is dropped",
        "strip it with scfm_lib.genes.map_genes",
        added=True,
    ),
    Case(
        "gene overlap below the threshold",
        tokenize_and_save(adata(), vocab_genes=GENES[:2] + ["X1", "X2"]),
        ScfmDataError,
        "only 33.3% of the data's detected genes",
        "species and gene annotation",
        added=True,
    ),
    # ---- labels
    Case(
        "label column missing",
        validate_then_save(adata(), label_key="celltype"),
        ScfmDataError,
        "label column 'celltype' not found",
        "data.label_key",
        added=True,
    ),
    Case(
        "label column with a single class",
        validate_then_save(adata(labels=["T"] * 4), label_key="cell_type"),
        ScfmDataError,
        "single class",
        "several cell types",
        added=True,
    ),
    Case(
        "label column with NaN",
        validate_then_save(nan_labels(), label_key="cell_type"),
        ScfmDataError,
        "1 of 4 cells have no label (NaN)",
        "notna()",
        added=True,
    ),
    Case(
        "required obs column missing",
        validate_then_save(adata(), required_obs=["donor"]),
        ScfmDataError,
        "obs column(s) ['donor'] not found",
        "point the profile at the right column",
    ),
    Case(
        "training labels: single class",
        plain(lambda: data.encode_labels(["T", "T"], ["T"])),
        ScfmDataError,
        "single class",
        "check the label column",
    ),
    Case(
        "training labels: NaN",
        plain(lambda: data.encode_labels(np.array(["T", None, "B"], dtype=object))),
        ScfmDataError,
        "no label (NaN)",
        "drop them before the split",
        added=True,
    ),
    Case(
        "evaluation labels unseen in training",
        plain(lambda: data.encode_labels(["T", "B"], ["NK"])),
        ScfmDataError,
        "not in training cells",
        "split by another column",
    ),
    # ---- profiles
    Case(
        "profile: unknown key",
        profile_call(pretrain={"max_stpes": 5}),
        ConfigError,
        "unknown key(s) ['max_stpes'] in profile section 'pretrain'",
        "Fix the spelling",
    ),
    Case("profile: unknown top-level key", profile_call(seed=3), ConfigError, "unknown key(s) ['seed']", "known keys"),
    Case(
        "profile: wrong type (int as text)",
        profile_call(pretrain={"max_steps": "ten"}),
        ConfigError,
        "max_steps must be int, got 'ten'",
        "write e.g. max_steps:",
        added=True,
    ),
    Case(
        "profile: wrong type in data",
        profile_call(data={"n_corpus": "many"}),
        ConfigError,
        "n_corpus must be int",
        "write e.g. n_corpus:",
        added=True,
    ),
    Case(
        "profile: wrong type (bool as text)",
        profile_call(pretrain={"bf16": "no"}),
        ConfigError,
        "bf16 must be bool",
        "write e.g. bf16:",
        added=True,
    ),
    Case(
        "profile: list given as a scalar",
        profile_call(seeds=0),
        ConfigError,
        "seeds must be list",
        "write e.g. seeds:",
        added=True,
    ),
    Case(
        "profile: section given as a scalar",
        profile_call(data=5),
        ConfigError,
        "section 'data' must be a mapping",
        "write e.g. 'data: {...}'",
        added=True,
    ),
    Case(
        "profile: fraction out of range",
        profile_call(fractions=[1.5]),
        ConfigError,
        "fraction 1.5 is outside [0, 1]",
        "e.g. 0.1 for 10%",
    ),
    Case(
        "profile: data.context_genes out of range",
        profile_call(data={"context_genes": 0}),
        ConfigError,
        "data.context_genes must be >= 1",
        "set it to 1 or more",
        added=True,
    ),
    Case(
        "profile: stats.ci out of range",
        profile_call(stats={"ci": 95}),
        ConfigError,
        "stats.ci must be",
        "e.g. 0.95",
        added=True,
    ),
    Case(
        "profile: pretrain.mask_ratio out of range",
        profile_call(pretrain={"mask_ratio": 1.0}),
        ConfigError,
        "mask_ratio must be in (0, 1)",
        "set e.g. mask_ratio: 0.25",
    ),
    Case(
        "profile: file missing",
        plain(lambda: load_profile("no_such_profile")),
        ConfigError,
        "does not exist",
        "available profiles",
    ),
    # ---- notebook parameters (papermill only warns on unknown ones)
    Case(
        "notebook: unknown parameter",
        notebook_call(fracton=0.5),
        ConfigError,
        "unknown notebook parameter(s) ['fracton']",
        "Check the spelling of the -p options",
    ),
    Case(
        "notebook: wrong type", notebook_call(seed="zero"), ConfigError, "parameter 'seed' must be", "pass e.g. -p seed"
    ),
    Case(
        "notebook: out of range",
        notebook_call(ranges={"fraction": (0.0, 1.0)}, fraction=1.5),
        ConfigError,
        "'fraction' = 1.5 is outside [0.0, 1.0]",
        "pass a value in that range",
        added=True,
    ),
    Case(
        "notebook: malformed run id",  # -p run scgpt_f1_s0: the job notebooks' second cell parses it
        plain(lambda: Run.parse("scgpt_f1_s0")),
        ValueError,
        "'scgpt_f1_s0' is not a run id as written",
        "the run's id is 'scgpt_f1.0_s0'",
        added=True,
    ),
    # ---- checkpoints
    Case(
        "checkpoint: fraction never pretrained",
        unpretrained_call(0.37),
        FileNotFoundError,
        "checkpoint scgpt_f0.37_s0 was never pretrained",
        "papermill nbs/pretrain.ipynb",
        added=True,
    ),
    Case(
        "checkpoint: listed grid point not run yet",
        unpretrained_call(1.0),
        FileNotFoundError,
        "metrics/pretrain/scgpt_f1.0_s0.json is missing",
        "snakemake -s workflow/Snakefile",
        added=True,
    ),
    Case(
        "checkpoint: weights corrupted",
        checkpoint_call(flip_byte),
        ValueError,
        "does not match the sha256",
        "delete the folder",
    ),
    Case(
        "checkpoint: weights truncated",
        checkpoint_call(truncate("model.safetensors")),
        ValueError,
        "does not match the sha256",
        "delete the folder",
    ),
    Case(
        "checkpoint: weights missing",
        checkpoint_call(remove("model.safetensors")),
        FileNotFoundError,
        "model.safetensors is missing",
        "delete the folder",
    ),
    Case(
        "checkpoint: checkpoint.json missing",
        checkpoint_call(remove("checkpoint.json")),
        FileNotFoundError,
        "checkpoint.json is missing",
        "delete the folder",
    ),
    Case(
        "checkpoint: checkpoint.json truncated",
        checkpoint_call(truncate("checkpoint.json")),
        ValueError,
        "checkpoint.json cannot be read",
        "delete the folder",
        added=True,
    ),
    Case(
        "resume: trainer_state.pt truncated",
        resume_call(unfinished_with_truncated_state),
        ValueError,
        "trainer_state.pt cannot be read",
        "delete the folder",
    ),
    Case(
        "resume: checkpoint of another configuration",
        resume_call(lambda folder: train.PretrainConfig(**{**PRETRAIN, "lr": 0.01})),
        ValueError,
        "was written by a different run",
        "pass the configuration and data it was made with",
    ),
    # ---- readers and results
    Case(
        "reader: unknown reader",
        plain(lambda: readers.read(".", "loom", "ds")),
        ScfmDataError,
        "unknown reader 'loom'",
        "readers: [",
    ),
    Case(
        "reader: file missing",
        plain(lambda: readers.read("no/such/file.h5ad", "h5ad", "ds")),
        ScfmDataError,
        "does not exist",
        "check the path",
        added=True,
    ),
    Case(
        "reader: count table of log values",
        count_table_call(
            "cell,"
            + ",".join(GENES)
            + "\n"
            + "".join(f"c{i}," + ",".join(f"{v:.4f}" for v in row) + "\n" for i, row in enumerate(LOG1P))
        ),
        ScfmDataError,
        "non-integer",
        "pass raw integer counts",
    ),
    Case(
        "reader: count table with a label column",
        count_table_call("cell,CD3E,label\nc0,1,T\nc1,2,B\n"),
        ScfmDataError,
        "non-numeric column(s) ['label']",
        "labels go in a separate obs table",
    ),
    Case(
        "reader: h5ad without counts, with NaN",
        h5ad_without_counts_call(np.where(COUNTS == 2, np.nan, LOG1P)),
        ScfmDataError,
        "found NaN/Inf",
        "store log1p(CP10k) values",
        added=True,
    ),
    Case(
        "tokens: truncated file",
        truncated_tokens_call(mmap=False),
        ScfmDataError,
        "cannot be read as cell tokens",
        "delete it and rerun the data job",
        added=True,
    ),
    Case(
        "tokens: truncated file, memory-mapped",
        truncated_tokens_call(mmap=True),
        ScfmDataError,
        "cannot be read as cell tokens",
        "delete it and rerun the data job",
        added=True,
    ),
    Case("metrics: NaN result", metrics_call(float("nan")), ValueError, "is not finite", "fix the cause"),
]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (hidden temp files too) with the sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_is_refused_with_problem_and_fix_and_nothing_is_written(case, tmp_path):
    call = case.prepare(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(case.error) as err:
        call()
    message = str(err.value)
    assert case.problem in message, f"the message does not name the problem: {message}"
    assert case.fix in message, f"the message does not name the fix: {message}"
    assert _snapshot(tmp_path) == before, "a refused input wrote or changed files"


def test_the_inventory_covers_every_kind_of_bad_input():
    """The issue's list, each with at least one row (and the ids are unique)."""
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids)
    for kind in (
        "log1p",
        "CP10k",
        "scaled",
        "negative",
        "NaN",
        "Inf",
        "empty cell",
        "duplicated gene",
        "duplicated cell",
        "Ensembl IDs, symbol",
        "symbols, Ensembl",
        "overlap",
        "label column missing",
        "single class",
        "label column with NaN",
        "profile: unknown",
        "profile: wrong type",
        "profile: fraction out of range",
        "notebook: unknown",
        "notebook: wrong type",
        "notebook: out of range",
        "weights corrupted",
        "weights truncated",
        "checkpoint.json missing",
        "checkpoint.json truncated",
        "mapping file",
        "another case",
        "versioned Ensembl",
        "tokens: truncated",
    ):
        assert any(kind in i for i in ids), kind


# --------------------------------------------------------------------------------------------- accepted inputs
def test_never_detected_genes_are_accepted_by_design():
    """A count table lists every annotated gene, most never detected: not an error. Such genes
    never become tokens, and the overlap check counts detected genes only."""
    counts = np.column_stack([COUNTS, np.zeros((4, 3), dtype=int)])
    a = adata(counts, genes_=GENES + ["Z1", "Z2", "Z3"])
    assert data.validate(a, label_key="cell_type") == "counts"
    got = data.tokenize(a, GeneVocab(GENES), context_genes=4)  # Z1-Z3 are outside the vocabulary
    np.testing.assert_array_equal(got.gene_ids, data.tokenize(adata(), GeneVocab(GENES), context_genes=4).gene_ids)


def test_ensembl_ids_with_a_mapping_file_tokenize_like_symbols(tmp_path):
    """The fix the Ensembl error names works: map with a file, then tokenize as with symbols."""
    id_map = genes.read_mapping(mapping_file(tmp_path, [(f"{i}.3", g) for i, g in zip(IDS, GENES)]))
    mapped = genes.harmonize_genes(adata(genes_=IDS), id_map=id_map)
    want = data.tokenize(adata(), GeneVocab(GENES), context_genes=4)
    np.testing.assert_array_equal(data.tokenize(mapped, GeneVocab(GENES), context_genes=4).gene_ids, want.gene_ids)


def test_symbols_with_a_reverse_mapping_file_reach_an_ensembl_vocabulary(tmp_path):
    to_ids = genes.read_mapping(mapping_file(tmp_path, list(zip(GENES, IDS))))
    mapped = genes.map_genes(adata(), to_ids)
    want = data.tokenize(adata(), GeneVocab(GENES), context_genes=4)
    got = data.tokenize(mapped, GeneVocab(IDS), context_genes=4)
    np.testing.assert_array_equal(got.gene_ids, want.gene_ids)  # the same positions of the same genes
