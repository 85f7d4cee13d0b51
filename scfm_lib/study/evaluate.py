"""The evaluate job: one checkpoint of the grid evaluated every way the study compares.

:func:`evaluate` is what the ``evaluate`` notebook (one page per run of the book) calls, and what a
reader calls to evaluate the grid from Python without papermill::

    for run in P.runs():
        evaluate(P, results_dir, run)

It finetunes (every regime of ``evaluate.regimes`` at its chosen rate, once per finetuning seed),
probes the frozen embedding (linear probe at every layer, kNN, Leiden clusters), scores the
pretraining loss on held-out cells (:mod:`scfm_lib.study.reconstruction`), the labelled
out-of-distribution cells, the tasks of ``data.tasks``, gene programs and in-silico perturbation,
then writes ``metrics/evaluate/<run id>.json`` and the test-cell embedding the scIB chapter reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

from scfm_lib import data, genes, io, metrics, probes, results, runner, train
from scfm_lib import evaluate as readouts
from scfm_lib.config import Profile, Run
from scfm_lib.layout import ResultsLayout
from scfm_lib.study import rates, task_evaluation
from scfm_lib.study.reconstruction import reconstruction_losses


@dataclass
class _Inputs:
    """The downstream dataset of one family, split, with its labels encoded."""

    downstream: ad.AnnData  # backed: the gene programs read its var and layers
    obs: pd.DataFrame
    tokens: data.CellTokens
    ood_tokens: data.CellTokens | None  # where the profile has an out-of-distribution set
    vocab: data.GeneVocab
    split: dict  # "train"/"val"/"test" -> row indices
    classes: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray


def _inputs(profile: Profile, layout: ResultsLayout, family: str) -> _Inputs:
    downstream = ad.read_h5ad(layout.dataset("downstream"), backed="r")
    obs = downstream.obs.copy()
    split = {s: np.flatnonzero(obs["split"].values == s) for s in ("train", "val", "test")}
    labels = obs[profile.data.label_key].values
    classes, (y_train, y_val, y_test) = data.encode_labels(
        labels[split["train"]], labels[split["val"]], labels[split["test"]]
    )
    return _Inputs(
        downstream=downstream,
        obs=obs,
        tokens=data.CellTokens.load(layout.tokens(family, "downstream")),
        ood_tokens=data.CellTokens.load(layout.tokens(family, "ood")) if profile.data.has_ood else None,
        vocab=data.GeneVocab.load(layout.vocab),
        split=split,
        classes=classes,
        y_train=y_train,
        y_val=y_val,
        y_test=y_test,
    )


def _finetune(
    profile: Profile, results_dir: str | Path, run: Run, model, x: _Inputs, finetune_max_steps: int | None
) -> tuple[dict, dict, dict]:
    """Every regime at the rate the rates job chose for this fraction, once per finetuning seed.

    Returns the logs, test predictions and classifiers, each keyed by (mode, finetuning seed).
    """
    logs, predicted, classifiers = {}, {}, {}
    for regime in profile.evaluate.regimes:  # the first is the benchmark's mode "finetune"
        mode = profile.evaluate.regime_mode(regime)
        rate = _chosen_rate(profile, results_dir, run, regime)
        for finetune_seed in profile.study.finetune_seeds_of(run.seed):
            cfg = profile.finetune_config(max_steps=finetune_max_steps, seed=finetune_seed, regime=regime, **rate)
            key = (mode, finetune_seed)
            classifiers[key], logs[key] = train.finetune_classifier(
                model,
                x.tokens.subset(x.split["train"]),
                x.y_train,
                x.tokens.subset(x.split["val"]),
                x.y_val,
                n_classes=len(x.classes),
                cfg=cfg,
            )
            predicted[key] = train.predict(classifiers[key], x.tokens.subset(x.split["test"]))
    return logs, predicted, classifiers


def _chosen_rate(profile: Profile, results_dir: str | Path, run: Run, regime: str) -> dict:
    return rates.chosen_rate(results_dir, run.family, regime, run.fraction) if profile.study.rate_candidates else {}


def _frozen(profile: Profile, run: Run, model, x: _Inputs) -> tuple[dict, np.ndarray, dict, np.ndarray, dict]:
    """The frozen readouts: embeddings per split, the primary probe, the probe per layer, kNN, clusters.

    The primary readout (the profile's model.readout_layer, mean over expressed genes) is one of the
    layers of one forward pass per split (bit for bit what train.embed returns, tests/test_model.py).
    """
    layers = {s: train.embed_layers(model, x.tokens.subset(idx)) for s, idx in x.split.items()}
    primary = model.layer_index(None)
    embedding = {s: layers[s][primary] for s in x.split}
    y_probe = readouts.linear_probe(embedding["train"], x.y_train, embedding["test"], seed=run.seed)
    y_layers = {
        f"linear_probe_layer{layer}": y_probe
        if layer == primary  # the same probe: not refitted
        else readouts.linear_probe(layers["train"][layer], x.y_train, layers["test"][layer], seed=run.seed)
        for layer in range(len(layers["train"]))
    }
    if run.family == "scgpt" and model.config.mvc_weight > 0:  # the CLS state scgpt's MVC term trains
        cls = {s: train.embed(model, x.tokens.subset(x.split[s]), layer=-1, pooling="cls") for s in ("train", "test")}
        y_layers["linear_probe_cls"] = readouts.linear_probe(cls["train"], x.y_train, cls["test"], seed=run.seed)
    y_knn = readouts.knn_classify(embedding["train"], x.y_train, embedding["test"], k=profile.evaluate.knn_k)
    clusters = readouts.cluster_scores(
        embedding["test"], x.y_test, resolution=profile.evaluate.leiden_resolution, seed=run.seed
    )
    return embedding, y_probe, y_layers, y_knn, clusters


def _ood_predictions(
    profile: Profile, layout: ResultsLayout, run: Run, model, x: _Inputs, classifiers: dict, embedding: dict
) -> tuple[dict, np.ndarray | None]:
    """Predictions on the labelled out-of-distribution cells (the synthetic atlas writes them whole)."""
    ood = readouts.labelled_ood_cells(layout.data_dir, run.family, profile.data.label_key, x.classes)
    if ood is None:
        print("this profile has no labelled out-of-distribution dataset")
        return {}, None
    ood_view, y_ood, n_ood_cells = ood
    z_ood = train.embed(model, ood_view)
    modes = dict.fromkeys(m for m, _ in classifiers)
    predictions = {
        mode: [train.predict(clf, ood_view) for (m, _), clf in classifiers.items() if m == mode] for mode in modes
    }
    predictions["linear_probe"] = readouts.linear_probe(embedding["train"], x.y_train, z_ood, seed=run.seed)
    predictions["knn"] = readouts.knn_classify(embedding["train"], x.y_train, z_ood, k=profile.evaluate.knn_k)
    print(f"{len(y_ood)} of {n_ood_cells} out-of-distribution cells have a type seen in training")
    return predictions, y_ood


def _open_ended(profile: Profile, run: Run, model, x: _Inputs) -> tuple[dict, pd.DataFrame]:
    """Gene-program retrieval among the vocabulary genes the downstream dataset measures, and perturbation."""
    programs, drivers = genes.program_ground_truth(x.downstream, profile.data.downstream or None)
    measured = set(x.downstream.var_names)  # built once, not once per gene
    candidates = [g for g in x.vocab.genes if g in measured]
    names, gene_matrix = probes.gene_embeddings(model, x.vocab, candidates)
    retrieval = probes.program_retrieval(gene_matrix, names, programs)
    test_labels = x.obs[profile.data.label_key].values[x.split["test"]]
    perturbation = probes.perturbation_probe(
        model,
        x.tokens.subset(x.split["test"]),
        test_labels,
        x.vocab,
        drivers,
        n_cells=profile.evaluate.perturbation_cells,
        seed=run.seed,
    )
    return retrieval, perturbation


def _annotation_records(
    run: Run, x: _Inputs, predictions: dict, predictions_ood: dict, y_ood: np.ndarray | None, test_tissues
) -> list[dict]:
    """Annotation scores with cell-bootstrap intervals: test cells, OOD cells, within each tissue."""
    plain = {"accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1}
    records = task_evaluation.annotation_records(x.y_test, predictions, plain, seed=run.seed)
    if predictions_ood:
        records += task_evaluation.annotation_records(y_ood, predictions_ood, plain, suffix="_ood", seed=run.seed)
    if test_tissues is not None:  # resample cells with their tissue: label codes carry it (tissue * K + type)
        K, tissue_code = len(x.classes), np.unique(test_tissues, return_inverse=True)[1]
        within = {"macro_f1_tissue": lambda t, p: metrics.macro_f1_within(t % K, p % K, t // K)}
        coded = {
            m: [tissue_code * K + y for y in (ys if isinstance(ys, list) else [ys])] for m, ys in predictions.items()
        }
        records += task_evaluation.annotation_records(tissue_code * K + x.y_test, coded, within, seed=run.seed)
    return records


def _confusion(classes: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """The row-normalized confusion matrix, true type -> predicted type -> share (for the run page)."""
    named = np.asarray(classes)
    table = pd.crosstab(
        pd.Series(named[y_true], name="true"), pd.Series(named[y_pred], name="predicted"), normalize="index"
    )
    return {str(t): {str(p): float(v) for p, v in row.items()} for t, row in table.iterrows()}


def evaluate(
    profile: Profile,
    results_dir: str | Path,
    run: Run,
    *,
    finetune_max_steps: int | None = None,
    parameters: dict | None = None,
) -> dict:
    """Evaluate one pretrained checkpoint and write ``metrics/evaluate/<run id>.json`` and its test embedding.

    Parameters
    ----------
    profile : Profile
        The study's profile.
    results_dir : str or pathlib.Path
        The profile's results folder (the data, pretrain and, with ``study.rate_candidates``, rates
        jobs have run).
    run : Run
        The grid point.
    finetune_max_steps : int, optional
        Overrides the profile's finetuning steps.
    parameters : dict, optional
        The parameters to record (a notebook's checked parameters); default
        ``run.parameters(profile, results_dir, finetune_max_steps=...)``.

    Returns
    -------
    dict
        The record written (:func:`scfm_lib.results.write_metrics`): ``records`` (mode, metric, value
        and, for annotation, 95% bootstrap bounds), and in ``extra`` the finetuning logs, the
        perturbation table, the gene-program retrieval, the classes and the task logs; plus, not
        written, ``confusion``: the row-normalized confusion matrices (true type -> predicted type ->
        share) of the first finetuned classifier and the linear probe on the test cells.
    """
    started = time.perf_counter()
    torch.set_num_threads(profile.workflow.threads_per_job)
    layout = ResultsLayout(results_dir)
    x = _inputs(profile, layout, run.family)
    model, pretrain_record = runner.pretrained_checkpoint(profile, results_dir, run)
    print(
        f"checkpoint {run.name}: pretrained on {pretrain_record['run']['n_pretrain_cells']} cells; "
        f"{len(x.classes)} cell types; train/val/test cells "
        f"{len(x.split['train'])}/{len(x.split['val'])}/{len(x.split['test'])}"
    )
    finetune_logs, y_finetuned, classifiers = _finetune(profile, results_dir, run, model, x, finetune_max_steps)
    embedding, y_probe, y_layers, y_knn, clusters = _frozen(profile, run, model, x)
    reconstruction = reconstruction_losses(profile, model, x.tokens, x.obs, x.split["test"], x.ood_tokens)
    predictions_ood, y_ood = _ood_predictions(profile, layout, run, model, x, classifiers, embedding)
    test_tissues = readouts.tissue_groups(x.obs, x.split["test"])  # the same test predictions, per tissue
    task_records, task_logs = [], {}
    for task_name in profile.data.tasks:
        task_rows, task_logs[task_name] = task_evaluation.evaluate_task(
            model,
            profile,
            results_dir,
            task_name,
            run.family,
            run.fraction,
            run.seed,
            finetune_max_steps=finetune_max_steps,
        )
        task_records += task_rows
    retrieval, perturbation = _open_ended(profile, run, model, x)
    finetuned = {
        mode: [y for (m, _), y in y_finetuned.items() if m == mode] for mode in dict.fromkeys(m for m, _ in y_finetuned)
    }
    predictions = {**finetuned, "linear_probe": y_probe, "knn": y_knn, **y_layers}
    records = _annotation_records(run, x, predictions, predictions_ood, y_ood, test_tissues)
    records += task_records
    records += [{"mode": "leiden", "metric": m, "value": float(clusters[m])} for m in ("ari", "nmi")]
    records += [{"mode": "reconstruction", "metric": m, "value": float(v)} for m, v in reconstruction.items()]
    records += [
        {"mode": "gene_programs", "metric": m, "value": float(retrieval[m])}
        for m in ("map", "chance_ap", "map_over_chance")
    ]
    records += [
        {"mode": "perturbation", "metric": m, "value": float(perturbation[m].mean())}
        for m in ("overexpress_toward", "delete_away")
        if perturbation[m].notna().any()
    ]
    with io.atomic_path(layout.embedding(run.name)) as tmp:  # the scib rule (study.scib) scores all checkpoints at once
        with open(tmp, "wb") as fh:
            np.save(fh, embedding["test"])
    finetune_seeds = profile.study.finetune_seeds_of(run.seed)
    if parameters is None:
        parameters = run.parameters(profile, results_dir, finetune_max_steps=finetune_max_steps)
    record = results.write_metrics(
        layout.metrics("evaluate", run.name),
        kind="evaluate",
        name=run.name,
        run=pretrain_record["run"],
        records=records,
        parameters={
            **parameters,
            "finetune": profile.finetune_config(max_steps=finetune_max_steps, seed=run.seed).__dict__,
            "finetune_seeds": finetune_seeds,
            "finetune_rates": {r: _chosen_rate(profile, results_dir, run, r) for r in profile.evaluate.regimes},
            "evaluate": profile.evaluate.__dict__,
        },
        data_hashes=pretrain_record["provenance"]["data_sha256"],
        extra={
            "seconds": time.perf_counter() - started,
            "finetune": finetune_logs[("finetune", finetune_seeds[0])],
            "finetune_regimes": {m: log for (m, s), log in finetune_logs.items() if s == finetune_seeds[0]},
            "finetune_runs": [
                {"mode": m, "finetune_seed": s, **{k: log[k] for k in ("best_step", "steps_run", "best_val_loss")}}
                for (m, s), log in finetune_logs.items()
            ],
            "perturbation": perturbation.to_dict("records"),
            "gene_programs": retrieval,
            "classes": list(x.classes),
            "tasks": task_logs,
        },
    )
    # The run page's figure; not written, so the record stays what the summary and the comparisons read.
    confusion = {
        "finetune": _confusion(x.classes, x.y_test, finetuned["finetune"][0]),
        "linear_probe": _confusion(x.classes, x.y_test, y_probe),
    }
    return {**record, "confusion": confusion}
