"""Learning rates of the finetuning regimes, chosen on validation cells (never test cells).

    python benchmarks/regime_rates.py --profile quick   # ~15 min on 2 cores; writes results/regime_rates_<profile>.json

A regime that freezes most of the encoder leaves fewer weights to learn the task, so the rates of
full finetuning need not suit it. For one checkpoint per model family (the largest corpus, seed 0:
a pretrained checkpoint of the profile's grid), each regime is finetuned at each candidate rate
with the profile's other settings, and the best validation loss (the early-stopping criterion) is
printed. The rate with the lowest validation loss, averaged over the families, is the one to put
in ``evaluate.regime_settings``; the profile says which it took. Test cells are never scored here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import torch
from common import write_result

from scfm_lib import data, train
from scfm_lib.config import Run, load_profile
from scfm_lib.layout import ResultsLayout

# regime -> the FinetuneConfig field searched and its candidates (the profile's value among them)
CANDIDATES = {
    "head_only": ("head_lr", [0.003, 0.01, 0.03, 0.1]),
    "last_k": ("lr", [0.001, 0.003, 0.01]),
    "lora": ("lr", [0.001, 0.003, 0.01]),
}


def validation_losses(profile_name: str, results_dir: Path, family: str) -> list[dict]:
    P = load_profile(profile_name)
    layout = ResultsLayout(results_dir)
    obs = ad.read_h5ad(layout.dataset("downstream"), backed="r").obs
    tokens = data.CellTokens.load(layout.tokens(family, "downstream"))
    split = {s: np.flatnonzero(obs["split"].values == s) for s in ("train", "val")}
    labels = obs[P.data.label_key].values
    classes, (y_train, y_val) = data.encode_labels(labels[split["train"]], labels[split["val"]])
    name = Run(family, max(P.fractions), 0).name
    model = train.load_checkpoint(layout.checkpoint(name))
    rows = []
    for regime, (field, values) in CANDIDATES.items():
        for value in values:
            cfg = P.finetune_config(seed=0, regime=regime, **{field: value})
            _, log = train.finetune_classifier(
                model, tokens.subset(split["train"]), y_train, tokens.subset(split["val"]), y_val, len(classes), cfg
            )
            rows.append(
                {
                    "family": family,
                    "checkpoint": name,
                    "regime": regime,
                    "field": field,
                    "value": value,
                    "best_val_loss": log["best_val_loss"],
                    "best_step": log["best_step"],
                    "max_steps": cfg.max_steps,
                }
            )
            print(
                f"{family:10s} {regime:9s} {field}={value:<6g} best validation loss {log['best_val_loss']:.4f} "
                f"at step {log['best_step']} of {cfg.max_steps}",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--results-dir", default=None, help="default: results/<profile>")
    args = parser.parse_args()
    P = load_profile(args.profile)
    torch.set_num_threads(P.workflow.threads_per_job)
    results_dir = Path(args.results_dir or ResultsLayout.of_profile(args.profile).results_dir)
    rows = [row for family in P.families for row in validation_losses(args.profile, results_dir, family)]
    chosen = {}
    for regime, (field, values) in CANDIDATES.items():
        mean_loss = {
            v: np.mean([r["best_val_loss"] for r in rows if r["regime"] == regime and r["value"] == v]) for v in values
        }
        chosen[regime] = {field: min(mean_loss, key=mean_loss.get)}
        print(
            f"{regime}: {field} = {chosen[regime][field]:g} (mean best validation loss over families "
            + ", ".join(f"{v:g}: {loss:.4f}" for v, loss in mean_loss.items())
            + ")"
        )
    write_result(f"regime_rates_{args.profile}", {"profile": args.profile, "rows": rows, "chosen": chosen})


if __name__ == "__main__":
    main()
