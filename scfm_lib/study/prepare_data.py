"""The workflow's ``data`` job: datasets, splits, vocabulary, medians and tokens of one profile.

Both sources of data go through the same steps, each written once here: the pretraining
validation cells (:func:`pretrain_validation_mask`), the downstream split
(:func:`split_downstream`), the rank-value medians and the tokens of every family
(:func:`tokenize_sets`), the context ceiling (:func:`context_ceilings`) and the written files
(:func:`write_h5ad`, :func:`write_record`). :func:`prepare_synthetic` draws the datasets from the
synthetic atlas (``nbs/data.ipynb``); :func:`scfm_lib.study.prepare_real.prepare_real` reads the
registered real datasets (``nbs/data_real.ipynb``). Each returns a :class:`DataJob`: the record
it wrote and what the job's page shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scfm_lib import atlas_datasets, data, evaluate, io, results
from scfm_lib.config import Profile

SPLITS = ("train", "val", "test")


@dataclass
class DataJob:
    """What a data job wrote (``record``) and the objects its page shows."""

    record: dict  # the metrics payload written to metrics/data/datasets.json
    datasets: dict[str, ad.AnnData]  # name -> dataset as the study uses it
    splits: dict[str, np.ndarray]  # downstream split name -> cell indices
    tokens: dict[tuple[str, str], data.CellTokens]  # (family, set name) -> tokens
    vocab: data.GeneVocab  # the gene vocabulary (with medians for the geneformer family)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # the page's tables, by name
    takeaways: str = ""  # Markdown: what the page concludes (real data)

    @property
    def hashes(self) -> pd.DataFrame:
        """The content sha256 of every dataset, one row each (columns ``dataset``, ``sha256``)."""
        hashes = self.record["provenance"]["data_sha256"]
        return pd.DataFrame({"dataset": list(hashes), "sha256": list(hashes.values())})


def pretrain_validation_mask(n_cells: int, n_val: int, seed: int) -> np.ndarray:
    """The corpus cells held back to measure the pretraining validation loss.

    Parameters
    ----------
    n_cells : int
        Cells of the corpus.
    n_val : int
        Cells to hold back.
    seed : int
        Seed of the draw (the profile's ``data.seed``).

    Returns
    -------
    numpy.ndarray
        Boolean mask of length ``n_cells``, True for the ``n_val`` validation cells.
    """
    is_val = np.zeros(n_cells, dtype=bool)
    is_val[np.random.default_rng(seed).choice(n_cells, n_val, replace=False)] = True
    return is_val


def split_downstream(downstream: ad.AnnData, profile: Profile) -> dict[str, np.ndarray]:
    """Split the downstream cells as the profile says and record it in ``obs["split"]``.

    By whole groups of ``data.split_by`` where the profile names one (with ``data.test_groups``,
    those groups are the test split and the rest is split at random within each cell type);
    otherwise at random within each label.

    Parameters
    ----------
    downstream : anndata.AnnData
        The downstream dataset; its ``obs["split"]`` is set (train, val, test).
    profile : Profile
        The profile.

    Returns
    -------
    dict of str to numpy.ndarray
        Split name -> cell indices.
    """
    d = profile.data
    splits = data.split_cells(
        downstream,
        by=d.split_by or None,
        seed=d.seed,
        stratify=None if d.split_by and not d.test_groups else d.label_key,
        test_groups=d.test_groups or None,
    )
    downstream.obs["split"] = "train"
    for split_name, idx in splits.items():
        downstream.obs.iloc[idx, downstream.obs.columns.get_loc("split")] = split_name
    downstream.obs["split"] = pd.Categorical(downstream.obs["split"], categories=list(SPLITS))
    return splits


# A set to tokenize: a dataset and the layer its values come from, or a function of the
# rank-value medians (None for the scgpt family) that tokenizes cells kept elsewhere (SOMA).
TokenSource = tuple[ad.AnnData, str] | Callable[[np.ndarray | None], data.CellTokens]


def tokenize_sets(
    families: list[str], vocab: data.GeneVocab, context_genes: int, sets: dict[str, TokenSource]
) -> dict[tuple[str, str], data.CellTokens]:
    """Tokenize every set for every family: top genes (scgpt) or rank-value encoding (geneformer).

    Parameters
    ----------
    families : list of str
        Model families.
    vocab : GeneVocab
        The vocabulary; its medians rank the geneformer family's genes.
    context_genes : int
        Genes per cell.
    sets : dict
        Set name -> ``(adata, layer)`` or a function of the medians returning the tokens.

    Returns
    -------
    dict
        ``(family, set name)`` -> tokens, families in the given order, sets in theirs.
    """
    tokens = {}
    for family in families:
        rank_by = vocab.medians if family == "geneformer" else None
        for name, source in sets.items():
            if callable(source):
                tokens[family, name] = source(rank_by)
            else:
                adata, layer = source
                tokens[family, name] = data.tokenize(adata, vocab, context_genes, layer=layer, medians=rank_by)
    return tokens


def save_vocab_and_tokens(
    vocab: data.GeneVocab, tokens: dict[tuple[str, str], data.CellTokens], out: Path
) -> pd.DataFrame:
    """Write the vocabulary and the tokens where the later jobs read them.

    Parameters
    ----------
    vocab : GeneVocab
        The vocabulary.
    tokens : dict
        ``(family, set name)`` -> tokens.
    out : pathlib.Path
        The run's data folder.

    Returns
    -------
    pandas.DataFrame
        Per ``(family, set)``: its cells and the share of the context its tokens fill.
    """
    vocab.save(out / "vocab.json")
    for (family, name), tok in tokens.items():
        tok.save(out / "tokens" / family / f"{name}.npz")
    return pd.DataFrame(
        {
            "cells": {k: len(t) for k, t in tokens.items()},
            "share of context filled": {k: float((t.gene_ids != data.PAD_ID).mean()) for k, t in tokens.items()},
        }
    )


def context_ceilings(
    downstream: ad.AnnData,
    tokens: dict[tuple[str, str], data.CellTokens],
    vocab: data.GeneVocab,
    splits: dict[str, np.ndarray],
    profile: Profile,
) -> dict[str, dict]:
    """The narrow task's macro-F1 on each family's context genes against all genes.

    Parameters
    ----------
    downstream : anndata.AnnData
        The downstream dataset.
    tokens : dict
        ``(family, set name)`` -> tokens; the ``downstream`` set of each family is used.
    vocab : GeneVocab
        The vocabulary.
    splits : dict of str to numpy.ndarray
        The downstream splits (train and test are used).
    profile : Profile
        The profile.

    Returns
    -------
    dict of str to dict
        Family -> ``{"context", "all_genes", "share"}`` (see :func:`scfm_lib.evaluate.context_ceiling`).
    """
    labels = downstream.obs[profile.data.label_key].astype(str).to_numpy()
    _, (y_train, y_test) = data.encode_labels(labels[splits["train"]], labels[splits["test"]])
    return {
        family: evaluate.context_ceiling(
            downstream,
            tokens[(family, "downstream")],
            len(vocab),
            splits["train"],
            splits["test"],
            y_train,
            y_test,
            seed=profile.data.seed,
        )
        for family in profile.families
    }


def ceiling_table(ceilings: dict[str, dict], context_genes: int) -> pd.DataFrame:
    """The context ceilings as a table, one row per family.

    Parameters
    ----------
    ceilings : dict of str to dict
        From :func:`context_ceilings`.
    context_genes : int
        Genes per cell (named in a column).

    Returns
    -------
    pandas.DataFrame
        Macro-F1 on the context genes, on all genes, and their ratio.
    """
    return pd.DataFrame(ceilings).T.rename(
        columns={
            "context": f"macro-F1, {context_genes} context genes",
            "all_genes": "macro-F1, all genes",
            "share": "share of all genes",
        }
    )


def write_h5ad(adata: ad.AnnData, path: Path, compression: str | None = "gzip") -> None:
    """Write a dataset atomically (a killed job leaves no partial file).

    Parameters
    ----------
    adata : anndata.AnnData
        The dataset.
    path : pathlib.Path
        Where to write it.
    compression : str or None
        The h5ad compression.
    """
    with io.atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression=compression)


def data_records(cells: dict[str, ad.AnnData], per_dataset: list[dict], ceilings: dict[str, dict]) -> list[dict]:
    """The records of a data job: cells per dataset, the source's own records, the context ceilings.

    Parameters
    ----------
    cells : dict of str to anndata.AnnData
        Dataset name -> dataset.
    per_dataset : list of dict
        The source's own records, placed between the cells and the ceilings.
    ceilings : dict of str to dict
        From :func:`context_ceilings`.

    Returns
    -------
    list of dict
        Records ``{"mode": "data", "metric", "value"}``.
    """
    records = [{"mode": "data", "metric": f"{name}_cells", "value": int(a.n_obs)} for name, a in cells.items()]
    return (
        records
        + per_dataset
        + [
            {"mode": "data", "metric": f"context_ceiling_{key}_{family}", "value": value}
            for family, c in ceilings.items()
            for key, value in c.items()
        ]
    )


def write_record(
    profile: Profile, results_dir: str | Path, records: list[dict], parameters: dict, hashes: dict, extra: dict
) -> dict:
    """Write the data job's metrics file (``metrics/data/datasets.json``).

    Parameters
    ----------
    profile : Profile
        The profile (its ``data`` section goes into the parameters).
    results_dir : str or pathlib.Path
        The run's results folder.
    records : list of dict
        From :func:`data_records`.
    parameters : dict
        The job's parameters besides the profile's data section.
    hashes : dict
        Dataset name -> content sha256.
    extra : dict
        What else the record keeps (``seconds`` etc.).

    Returns
    -------
    dict
        The payload written.
    """
    return results.write_metrics(
        results.metrics_path(results_dir, "data", "datasets"),
        kind="data",
        name="datasets",
        run={},
        records=records,
        parameters={**parameters, "data": profile.data.__dict__},
        data_hashes=hashes,
        extra=extra,
    )


def prepare_synthetic(profile: Profile, results_dir: str | Path, parameters: dict | None = None) -> DataJob:
    """The data job of a synthetic profile: draw, split, tokenize and write the atlas's datasets.

    Writes, under ``results_dir/data``: ``corpus.h5ad``, ``downstream.h5ad``, ``ood.h5ad``,
    ``vocab.json`` and ``tokens/<family>/<set>.npz``; and ``metrics/data/datasets.json``.

    Parameters
    ----------
    profile : Profile
        A profile with ``data.source: synthetic``.
    results_dir : str or pathlib.Path
        The run's results folder.
    parameters : dict, optional
        The notebook's parameters, kept in the record's provenance (default: profile and results_dir).

    Returns
    -------
    DataJob
        The record written, the datasets, splits, tokens and vocabulary, and the tables ``summary``,
        ``donor_splits``, ``sparsity``, ``tokens`` and ``ceilings``.
    """
    started = time.perf_counter()
    P, out = profile, Path(results_dir) / "data"
    parameters = parameters if parameters is not None else {"profile": P.name, "results_dir": str(results_dir)}
    atlas_config = P.atlas_config()
    datasets = atlas_datasets.make_study_datasets(
        atlas_config,
        n_corpus=P.data.n_corpus + P.data.n_val_pretrain,
        n_downstream=P.data.n_downstream,
        n_ood=P.data.n_ood,
        seed=P.data.seed,
        heldout_tissues=P.data.heldout_tissues,
    )
    for adata in datasets.values():
        data.validate_counts(adata, required_obs=(P.data.batch_key, "donor", "tissue"), label_key=P.data.label_key)
    corpus, downstream = datasets["corpus"], datasets["downstream"]
    is_val = pretrain_validation_mask(corpus.n_obs, P.data.n_val_pretrain, P.data.seed)
    corpus.obs["pretrain_split"] = pd.Categorical(np.where(is_val, "val", "train"))
    splits = split_downstream(downstream, P)
    sparsity = {name: 1 - a.layers["counts"].nnz / (a.n_obs * a.n_vars) for name, a in datasets.items()}

    vocab = data.GeneVocab(list(corpus.var_names))
    if "geneformer" in P.families:  # rank-value encoding: each gene's median over the training corpus
        vocab = data.GeneVocab(vocab.genes, data.gene_medians(corpus[~is_val], vocab))
    sets = {
        "corpus_train": corpus[~is_val],
        "corpus_val": corpus[is_val],
        "downstream": downstream,
        "ood": datasets["ood"],
    }
    tokens = tokenize_sets(P.families, vocab, P.data.context_genes, {k: (a, "counts") for k, a in sets.items()})
    token_table = save_vocab_and_tokens(vocab, tokens, out)
    ceilings = context_ceilings(downstream, tokens, vocab, splits, P)

    hashes = {}
    for name, adata in datasets.items():
        write_h5ad(adata, out / f"{name}.h5ad")
        hashes[name] = io.anndata_sha256(adata)
    records = data_records(
        datasets,
        [{"mode": "data", "metric": f"{name}_sparsity", "value": float(s)} for name, s in sparsity.items()],
        ceilings,
    )
    record = write_record(
        P,
        results_dir,
        records,
        {**parameters, "atlas": atlas_config.__dict__},
        hashes,
        {
            "seconds": time.perf_counter() - started,
            "downstream_split_cells": {k: int(len(v)) for k, v in splits.items()},
        },
    )
    summary = pd.DataFrame(
        {
            name: {
                "cells": a.n_obs,
                "genes": a.n_vars,
                "donors": a.obs["donor"].nunique(),
                "batches": a.obs["batch"].nunique(),
                "cell types": a.obs["cell_type"].nunique(),
                "tissues": a.obs["tissue"].nunique(),
                "technologies": ", ".join(sorted(a.obs["technology"].unique())),
            }
            for name, a in datasets.items()
        }
    ).T
    tables = {
        "summary": summary,
        "donor_splits": pd.crosstab(downstream.obs["donor"], downstream.obs["split"]),
        "sparsity": pd.Series(sparsity, name="fraction of zero counts").to_frame(),
        "tokens": token_table,
        "ceilings": ceiling_table(ceilings, P.data.context_genes),
    }
    return DataJob(record, datasets, splits, tokens, vocab, tables)
