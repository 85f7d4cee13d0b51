"""Design variants of the pretraining objective and budget, judged by the gates only.

    python benchmarks/design_variants.py --family scgpt        # ~15 min on 1 core per family
    python benchmarks/design_variants.py --family geneformer

The study issue allows design choices (objective terms, width, budget) to be chosen on the
held-out pretraining loss, the gates and the controls, never on finetuned scores or the masking
contrast D, and asks that every variant tried be listed with its gate results. This script is
that list. For each variant it pretrains seed 0 on the smallest and the largest corpus of the
quick profile's design (early stopping on the validation loss, capped) and reports:

- gate 0: the validation loss against the context-free predictor, and its fall with corpus size;
- gate 1: a linear probe (macro-F1) of the mean over expressed genes at every layer, trained on
  the downstream *training* donors and scored on the *validation* donors (never the test donors
  the study reports), for the random-init control, the smallest and the largest corpus.

It writes ``benchmarks/results/design_variants_<family>.json``; the pretraining chapter lists it.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from common import write_result

from scfm_lib import atlas, atlas_datasets, data, evaluate, metrics, train
from scfm_lib.analysis import gates
from scfm_lib.model import ScFMConfig

N_CORPUS, N_VAL, CONTEXT = 4000, 300, 128
FRACTIONS = (0.01, 1.0)
BASE_MODEL = {"d_model": 64, "n_layers": 2, "n_heads": 4}
BASE_PRETRAIN = {
    "batch_size": 64,
    "lr": 1e-3,
    "warmup_steps": 40,
    "eval_every": 25,
    "checkpoint_every": 10**6,
    "bf16": False,
    "budget": "converge",
    "patience": 6,
    "max_steps": 1500,
}
# name -> (model overrides, pretrain overrides, why it was tried)
VARIANTS = {
    "base": ({}, {}, "the profile's objective: loss at hidden positions only"),
    "keep_0.1": ({}, {"keep_ratio": 0.1}, "BERT's 10% of loss positions left shown, so shown positions are trained"),
    "keep_0.5": ({}, {"keep_ratio": 0.5}, "half of the loss positions left shown"),
    "lr_3e-3": ({}, {"lr": 3e-3}, "a higher peak rate, to converge within the cap"),
    "wide_128": ({"d_model": 128}, {}, "twice the width"),
}


def probe_by_layer(model, tokens, splits, y_train, y_val) -> list[float]:
    Z = train.embed_layers(model, tokens)  # [n_layers + 1, N, D]
    return [metrics.macro_f1(y_val, evaluate.linear_probe(z[splits["train"]], y_train, z[splits["val"]])) for z in Z]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True, choices=["scgpt", "geneformer"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    family = args.family
    cfg = atlas.AtlasConfig(n_genes=2000, seed=0)
    datasets = atlas_datasets.make_study_datasets(
        cfg, n_corpus=N_CORPUS + N_VAL, n_downstream=3000, n_ood=10, seed=0, heldout_tissues=["skin"]
    )
    corpus, downstream = datasets["corpus"], datasets["downstream"]
    vocab = data.GeneVocab(list(corpus.var_names))
    vocab = data.GeneVocab(vocab.genes, data.gene_medians(corpus[:N_CORPUS], vocab))
    medians = vocab.medians if family == "geneformer" else None
    tokens = data.tokenize(corpus, vocab, CONTEXT, medians=medians)
    corpus_train, corpus_val = tokens.subset(np.arange(N_CORPUS)), tokens.subset(np.arange(N_CORPUS, N_CORPUS + N_VAL))
    down_tokens = data.tokenize(downstream, vocab, CONTEXT, medians=medians)
    splits = data.split_cells(downstream, by="donor", seed=0)
    labels = downstream.obs["cell_type"].astype(str).to_numpy()
    _, (y_train, y_val) = data.encode_labels(labels[splits["train"]], labels[splits["val"]])
    context_free = gates.context_free_loss(corpus_train, corpus_val, family)
    print(f"{family}: context-free loss {context_free:.4f}", flush=True)
    rows = []
    for name in args.variants:
        model_over, pretrain_over, why = VARIANTS[name]
        model_config = ScFMConfig(
            vocab_size=len(vocab), family=family, context_genes=CONTEXT, **{**BASE_MODEL, **model_over}
        )
        random_init = train.initial_model(model_config, 0)
        row = {
            "variant": name,
            "why": why,
            "model": model_config.to_dict(),
            "pretrain": {**BASE_PRETRAIN, **pretrain_over},
            "context_free_loss": context_free,
            "probe_by_layer": {"0.0": probe_by_layer(random_init, down_tokens, splits, y_train, y_val)},
            "val_loss": {"0.0": train.reconstruction_loss(random_init, corpus_val)},
            "best_step": {},
            "history": {},
        }
        for fraction in FRACTIONS:
            idx = data.nested_subsets(N_CORPUS, [fraction], seed=0)[fraction]
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                result = train.pretrain(
                    model_config,
                    corpus_train.subset(idx),
                    corpus_val,
                    train.PretrainConfig(**row["pretrain"], seed=0),
                    out,
                    progress=False,
                )
                model = train.load_checkpoint(out)
            key = str(fraction)
            row["val_loss"][key], row["best_step"][key] = result["val_loss"], result["best_step"]
            row["history"][key] = result["history"]
            row["probe_by_layer"][key] = probe_by_layer(model, down_tokens, splits, y_train, y_val)
            print(
                f"{family} {name:9s} fraction {fraction:<5g} val loss {result['val_loss']:.4f} "
                f"(best step {result['best_step']} of {result['step']} run) probe by layer "
                f"{np.round(row['probe_by_layer'][key], 3).tolist()} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        print(
            f"{family} {name:9s} random init probe by layer {np.round(row['probe_by_layer']['0.0'], 3).tolist()}",
            flush=True,
        )
        rows.append(row)
    write_result(
        f"design_variants_{family}",
        {
            "family": family,
            "n_corpus": N_CORPUS,
            "context_genes": CONTEXT,
            "fractions": FRACTIONS,
            "seed": 0,
            "scored_on": "validation donors",
            "variants": rows,
        },
    )


if __name__ == "__main__":
    main()
