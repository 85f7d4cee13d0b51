"""The workflow's ``data`` job for real data: the registered datasets of a profile, read and tokenized.

The corpus pools the profile's ``data.corpus`` datasets, each physical cell once, after the
narrow tasks' cells are reserved (``scfm_lib.corpus``), or is streamed from a TileDB-SOMA
experiment; genes are harmonized to GENCODE v44 symbols. Splits, vocabulary medians, tokens,
ceilings and files go through the same steps as the synthetic atlas
(:mod:`scfm_lib.study.prepare_data`). ``nbs/data_real.ipynb`` calls :func:`prepare_real`.
"""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scfm_lib import corpus as corpora
from scfm_lib import data, datasets, genes, io, readers
from scfm_lib.config import Profile
from scfm_lib.study import tasks
from scfm_lib.study.prepare_data import (
    DataJob,
    ceiling_table,
    context_ceilings,
    data_records,
    pretrain_validation_mask,
    save_vocab_and_tokens,
    split_downstream,
    tokenize_sets,
    write_h5ad,
    write_record,
)

MEDIAN_SAMPLE_CELLS = 50_000  # a streamed corpus's medians come from a seeded sample of this many cells


def dataset_roles(profile: Profile) -> dict[str, str]:
    """Every registered dataset the profile reads, with its role in the study.

    Parameters
    ----------
    profile : Profile
        A profile with ``data.source`` ``registry`` or ``soma``.

    Returns
    -------
    dict of str to str
        Dataset name -> its role (pretraining corpus, narrow tasks, out-of-distribution, task).
    """
    d = profile.data
    used = {name: "pretraining corpus" for name in d.corpus}
    used[d.downstream] = (
        "pretraining corpus, except the narrow tasks' cells" if d.downstream_cells else "narrow tasks (held out)"
    )
    if d.ood:
        used[d.ood] = "out-of-distribution annotation and reconstruction (held out)"
    for task_name, spec in d.tasks.items():
        used[spec.dataset] = f"task {task_name} (held out)"
    return used


def sources(profile: Profile) -> tuple[pd.DataFrame, str]:
    """The registry's view of the profile's datasets: a table and a Markdown list of sources.

    Parameters
    ----------
    profile : Profile
        The profile.

    Returns
    -------
    tuple of (pandas.DataFrame, str)
        Role, cells, genes, labels, raw counts and license per dataset; and per dataset its title,
        what the file holds, its citation and where it is published (or converted from).
    """
    used = dataset_roles(profile)
    registry = datasets.table().loc[list(used)]
    registry.insert(0, "role", pd.Series(used))
    entries = {name: datasets.get(name) for name in used}
    text = "\n".join(
        f"- `{name}`: **{e.title}**. {e.holds} {e.citation} "
        + (f"Published at <{e.files[0].url}>." if e.files[0].url else f"Source: {e.origin}.")
        for name, e in entries.items()
    )
    return registry[["role", "cells", "genes", "labels", "raw counts", "license"]], text


class _Reader:
    """Reads registered datasets with genes mapped to current human symbols, keeping each as read."""

    def __init__(self, profile: Profile) -> None:
        self.id_map = datasets.load_mapping("gencode_v44_id2name")
        self.symbol_map = None  # old-release symbols -> GENCODE v44 names, via data.symbol_reference's IDs
        if profile.data.symbol_reference:
            reference = datasets.load(profile.data.symbol_reference).var
            self.symbol_map = genes.release_symbol_map(
                reference["gene_symbol_original"], reference["ensembl_id"], self.id_map
            )
        self.as_read: dict[str, ad.AnnData] = {}  # each dataset as its file names its genes

    def __call__(self, name: str) -> ad.AnnData:
        adata = self.as_read[name] = datasets.load(name)
        return genes.harmonize_genes(adata, id_map=self.id_map, symbol_map=self.symbol_map)


def prepare_real(profile: Profile, results_dir: str | Path, parameters: dict | None = None) -> DataJob:
    """The data job of a real profile: read, pool, split, tokenize and write the registered datasets.

    Writes, under ``results_dir/data``: ``downstream.h5ad``, ``ood.h5ad`` (with ``data.ood``),
    ``corpus.h5ad`` (a registry corpus with ``study.negative_control``), ``vocab.json``,
    ``tokens/<family>/<set>.npz`` and each task's files; and ``metrics/data/datasets.json``.

    Parameters
    ----------
    profile : Profile
        A profile with ``data.source`` ``registry`` or ``soma``.
    results_dir : str or pathlib.Path
        The run's results folder.
    parameters : dict, optional
        The notebook's parameters, kept in the record's provenance (default: profile and results_dir).

    Returns
    -------
    DataJob
        The record written, the datasets as used, splits, tokens and vocabulary, and the tables
        ``loaded``, ``composition``, ``label_splits``, ``overlap``, ``harmonization``, ``tokens``,
        ``ceilings`` and ``tasks``.
    """
    started = time.perf_counter()
    P, d, out = profile, profile.data, Path(results_dir) / "data"
    parameters = parameters if parameters is not None else {"profile": P.name, "results_dir": str(results_dir)}
    read = _Reader(P)
    raw, composition = {}, pd.DataFrame()  # raw: each dataset with harmonized genes, before pooling
    n_keep = d.n_corpus + d.n_val_pretrain
    if d.source == "registry":
        raw = {name: read(name) for name in d.corpus}
        task_cells = {}
        if d.downstream_cells:  # the tasks' cells come out of a corpus dataset, before pooling
            task_cells[d.downstream] = corpora.reserve_task_cells(
                raw[d.downstream], d.downstream_cells, d.label_key, d.seed
            )
            downstream = raw[d.downstream][task_cells[d.downstream]].copy()
        corpus, composition = corpora.pool_corpus(raw, task_cells)
        data.validate_counts(corpus)
        if d.n_corpus and corpus.n_obs > n_keep:
            corpus = corpus[np.sort(np.random.default_rng(d.seed).choice(corpus.n_obs, n_keep, replace=False))].copy()
        n_corpus_cells = corpus.n_obs
    else:  # a TileDB-SOMA corpus (the CELLxGENE Census): streamed, never loaded whole
        from scfm_lib import soma

        source = soma.SomaSource(**d.soma)
        (corpus_ids,) = soma.select_cells(source, [1.0], seed=d.seed).values()
        if d.n_corpus and len(corpus_ids) > n_keep:
            corpus_ids = np.sort(np.random.default_rng(d.seed).choice(corpus_ids, n_keep, replace=False))
        n_corpus_cells = len(corpus_ids)
    if not d.downstream_cells:
        downstream = raw[d.downstream] = read(d.downstream)
    value_layer = {
        "downstream": data.validate(
            downstream, required_obs=[d.batch_key] if d.batch_key else [], label_key=d.label_key
        )
    }
    ood = read(d.ood) if d.ood else None
    if ood is not None:
        value_layer["ood"] = data.validate(ood)
        if d.ood_label_map and d.label_key in ood.obs:  # the OOD set's names for the downstream classes
            ood.obs[d.label_key] = ood.obs[d.label_key].astype(str).replace(d.ood_label_map)
    loaded = {"corpus": corpus} if d.source == "registry" else {}
    loaded["downstream"] = downstream
    if ood is not None:
        loaded["ood"] = ood

    is_val = pretrain_validation_mask(n_corpus_cells, d.n_val_pretrain, d.seed)
    splits = split_downstream(downstream, P)
    if d.source == "registry":
        vocab = data.build_vocab(corpus, min_cells=d.vocab_min_cells, max_genes=d.vocab_max_genes or None)
    else:
        vocab = data.vocab_from_detection(
            soma.detected_cells(source, corpus_ids), min_cells=d.vocab_min_cells, max_genes=d.vocab_max_genes or None
        )
    overlap = data.overlap_table(loaded, vocab)
    harmonization = pd.DataFrame(
        {
            name: genes.harmonization_report(adata, vocab, id_map=read.id_map, symbol_map=read.symbol_map)
            for name, adata in read.as_read.items()
        }
    ).T
    harmonization = harmonization[
        ["genes", "detected", "in_vocabulary_before", "in_vocabulary_after", "share_before", "share_after"]
    ]

    n_context = d.context_genes
    if "geneformer" in P.families:  # rank-value encoding: each gene's median over the training corpus
        if d.source == "registry":
            medians = data.gene_medians(corpus[~is_val], vocab)
        else:  # streamed: the medians of a seeded sample of the training cells
            sample = np.sort(np.random.default_rng(d.seed).permutation(corpus_ids[~is_val])[:MEDIAN_SAMPLE_CELLS])
            medians = data.gene_medians(readers.concat(list(soma.iter_anndata(source, sample))), vocab)
        vocab = data.GeneVocab(vocab.genes, medians)
    if d.source == "registry":
        sets = {"corpus_train": (corpus[~is_val], "counts"), "corpus_val": (corpus[is_val], "counts")}
    else:
        sets = {
            name: (
                lambda rank_by, ids=corpus_ids[mask]: soma.tokenize_soma(source, ids, vocab, n_context, medians=rank_by)
            )
            for name, mask in (("corpus_train", ~is_val), ("corpus_val", is_val))
        }
    sets["downstream"] = (downstream, value_layer["downstream"])
    if ood is not None:
        sets["ood"] = (ood, value_layer["ood"])
    tokens = tokenize_sets(P.families, vocab, n_context, sets)
    token_table = save_vocab_and_tokens(vocab, tokens, out)
    ceilings = context_ceilings(downstream, tokens, vocab, splits, P)
    task_reports = {
        name: tasks.prepare_task(name, spec, vocab, P.families, n_context, out, seed=d.seed)
        for name, spec in d.tasks.items()
    }

    write_h5ad(downstream, out / "downstream.h5ad")
    if ood is not None:  # its labels, for the out-of-distribution annotation task
        write_h5ad(ood, out / "ood.h5ad")
    if d.source == "registry" and P.study.negative_control:  # the negative control permutes the training cells
        corpus.obs["pretrain_split"] = pd.Categorical(np.where(is_val, "val", "train"))
        write_h5ad(corpus, out / "corpus.h5ad", compression=None)
    hashes = {name: io.anndata_sha256(a) for name, a in loaded.items()}
    hashes.update({f"task_{name}": r["sha256"] for name, r in task_reports.items()})
    used = dataset_roles(P)
    per_dataset = [
        {"mode": "data", "metric": f"{name}_vocab_overlap", "value": float(overlap.loc[name, "share of dataset genes"])}
        for name in overlap.index
    ]
    records = data_records(loaded, per_dataset, ceilings)
    records += [
        {"mode": "data", "metric": f"task_{name}_cells", "value": r["cells"]} for name, r in task_reports.items()
    ]
    record = write_record(
        P,
        results_dir,
        records,
        parameters,
        hashes,
        {
            "seconds": time.perf_counter() - started,
            "file_sha256": {name: datasets.get(name).files[0].sha256 for name in used},
            "vocab_size": len(vocab.genes),
            "downstream_split_cells": {k: int(len(v)) for k, v in splits.items()},
            "corpus_composition": composition.to_dict("index") if d.source == "registry" else {},
            "harmonization": harmonization.to_dict("index"),
            "tasks": {name: {k: v for k, v in r.items() if k != "sha256"} for name, r in task_reports.items()},
        },
    )
    loaded_table = pd.DataFrame(
        {
            name: {
                "cells": a.n_obs,
                "genes": a.n_vars,
                "values": a.uns.get("scfm", {}).get("values", "counts"),
                "labels": a.obs[d.label_key].nunique() if d.label_key in a.obs else 0,
            }
            for name, a in loaded.items()
        }
    ).T
    tables = {
        "loaded": loaded_table,
        "composition": composition,
        "label_splits": pd.crosstab(downstream.obs[d.label_key], downstream.obs["split"], margins=True),
        "overlap": overlap,
        "harmonization": harmonization,
        "tokens": token_table,
        "ceilings": ceiling_table(ceilings, n_context),
        "tasks": task_table(task_reports),
    }
    text = takeaways(P, downstream, overlap, len(vocab.genes), n_corpus_cells, int(is_val.sum()), task_reports)
    return DataJob(record, loaded, splits, tokens, vocab, tables, text)


def task_table(task_reports: dict[str, dict]) -> pd.DataFrame:
    """One row per task of the profile: its data, split, classes, gene harmonization and ceilings.

    Parameters
    ----------
    task_reports : dict of str to dict
        Task name -> the report of :func:`scfm_lib.study.tasks.prepare_task`.

    Returns
    -------
    pandas.DataFrame
        The tasks (no rows for a profile without tasks).
    """
    return pd.DataFrame(
        {
            name: {
                "dataset": r["dataset"],
                "split": r["split"],
                "cells": r["cells"],
                "classes": len(r["classes"]),
                "train / val / test": " / ".join(str(r["split_cells"][s]) for s in tasks.SPLITS),
                "classes dropped": ", ".join(f"{c} ({n})" for c, n in r["dropped_classes"].items()) or "none",
                "detected genes in vocabulary, as read": f"{r['harmonization']['share_before']:.1%}",
                "after harmonization": f"{r['harmonization']['share_after']:.1%}",
                **{
                    f"context ceiling, {family}": f"{c['context']:.3f} of {c['all_genes']:.3f} ({c['share']:.0%})"
                    for family, c in r["context_ceiling"].items()
                },
            }
            for name, r in task_reports.items()
        }
    ).T


def takeaways(
    profile: Profile,
    downstream: ad.AnnData,
    overlap: pd.DataFrame,
    vocab_size: int,
    n_corpus_cells: int,
    n_val_cells: int,
    task_reports: dict[str, dict],
) -> str:
    """The key takeaways of a real profile's data, as a Markdown list.

    Parameters
    ----------
    profile : Profile
        The profile.
    downstream : anndata.AnnData
        The narrow tasks' dataset.
    overlap : pandas.DataFrame
        From :func:`scfm_lib.data.overlap_table`.
    vocab_size : int
        Genes in the vocabulary.
    n_corpus_cells : int
        Cells of the corpus.
    n_val_cells : int
        Of them, cells held back for the validation loss.
    task_reports : dict of str to dict
        Task name -> the report of :func:`scfm_lib.study.tasks.prepare_task`.

    Returns
    -------
    str
        Markdown.
    """
    d = profile.data
    no_counts = [n for n in dataset_roles(profile) if not datasets.get(n).has_counts]
    return "\n".join(
        [
            f"- The corpus holds {n_corpus_cells} cells ({', '.join(d.corpus) or d.soma.get('uri')}); "
            f"{n_val_cells} of them are held back for the validation loss.",
            f"- The narrow tasks use `{d.downstream}` ({downstream.n_obs} cells, "
            f"{downstream.obs[d.label_key].nunique()} classes of `{d.label_key}`), never seen in pretraining; "
            f"{overlap.loc['downstream', 'share of dataset genes']:.1%} of its genes are in the {vocab_size}-gene "
            "vocabulary.",
            *(
                [
                    f"- Without raw counts: {', '.join(f'`{n}`' for n in no_counts)}; tokenized from log-normalized "
                    "values, "
                    "refused wherever counts are required."
                ]
                if no_counts
                else []
            ),
            *(
                [
                    "- There is no batch column: the integration (batch-correction) metrics are not computed for this "
                    "profile."
                ]
                if not d.batch_key
                else []
            ),
            *[
                f"- Task `{name}`: {r['words']} on `{r['dataset']}` ({r['cells']} cells, {len(r['classes'])} classes; "
                f"{r['split']}); {r['harmonization']['share_after']:.1%} of its detected genes reach the vocabulary."
                for name, r in task_reports.items()
            ],
            *(
                [
                    "- There is no out-of-distribution dataset: zero-shot reconstruction is measured on held-out "
                    "downstream cells only."
                ]
                if not d.ood
                else []
            ),
        ]
    )
