"""The study's summary: gates, controls, the masking contrast D and the verdict, per family and task.

    python -m scfm_lib.study.summary --profile quick --results-dir results/quick --book-dir book/quick

The workflow's ``summarize`` rule runs this after every evaluation and control. It writes
``results/<profile>/summary.json`` and the small committed copy ``book/<profile>/summary.json``,
which the intro, the masking chapter and the recommendations read. Records are keyed by fields
(family, task, mode, metric), never by display labels. Its data section (what the study ran on) is
built by :mod:`scfm_lib.study.data_summary`, whose :func:`data_summary` this module re-exports.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from scfm_lib import data, io, results
from scfm_lib.analysis import endpoints, equivalence, gates, linearity
from scfm_lib.config import Profile, load_profile
from scfm_lib.layout import NEGATIVE_CONTROL, POSITIVE_CONTROL, ResultsLayout
from scfm_lib.study import tasks
from scfm_lib.study.data_summary import data_summary

#: The narrow tasks of the primary endpoint: name -> metric (the profile's data.task_words says each in words).
#: A profile's data.tasks add tasks of their own (task_metrics).
TASKS = {"annotation": "macro_f1", "annotation_ood": "macro_f1_ood"}
FROZEN_MODE, FINETUNED_MODE = "linear_probe", "finetune"
#: Secondary series: (kind, mode, metric), where present in the records.
SECONDARY_METRICS = ("macro_f1", "accuracy", "macro_f1_tissue", "macro_f1_ood")


def task_metrics(profile: Profile) -> dict[str, str]:
    """Every narrow task of the profile -> its primary metric: :data:`TASKS`, then ``data.tasks``.

    Parameters
    ----------
    profile
        The profile (its ``data.tasks`` add tasks of their own).

    Returns
    -------
    dict of str to str
        Task name -> the metric its records carry (``macro_f1``, ``macro_f1_ood``, and
        :func:`scfm_lib.study.tasks.metric` of each task of its own).
    """
    return {**TASKS, **{name: tasks.metric(name) for name in profile.data.tasks}}


def task_words(profile: Profile, task: str) -> str:
    """A narrow task in words, as the summary and the chapters name it.

    Parameters
    ----------
    profile
        The profile.
    task
        A task name of :func:`task_metrics`.

    Returns
    -------
    str
        The words of the task of its own (``data.tasks[task].words``) or of the downstream task
        (``data.task_words[task]``).
    """
    return profile.data.tasks[task].words if task in profile.data.tasks else profile.data.task_words[task]


def format_estimate(e: dict, digits: int = 3, unit: str = "") -> str:
    """``+0.012 (95% CI -0.003 to +0.027, 8 seeds)``: an estimate with its interval, in words.

    Parameters
    ----------
    e
        A paired estimate as a dict (:meth:`scfm_lib.analysis.endpoints.PairedEstimate.to_dict`:
        ``mean``, ``ci``, ``ci_low``, ``ci_high``, ``n``), as read back from JSON (None for NaN).
    digits
        Decimals of the mean and the interval's ends.
    unit
        Words after the mean (``"macro-F1"``); none when empty.

    Returns
    -------
    str
        The mean, signed, with its interval and seeds; ``"... (no interval: n seed(s))"`` when
        the interval is undefined, and ``"undefined"`` when the mean is (or ``e`` is empty).
    """

    def number(key: str) -> float:  # JSON writes NaN as null
        value = (e or {}).get(key)
        return float("nan") if value is None else float(value)

    if not np.isfinite(number("mean")):
        return "undefined"
    unit = f" {unit}" if unit else ""
    if not np.isfinite(number("ci_low")):
        return f"{e['mean']:+.{digits}f}{unit} (no interval: {e.get('n', 0)} seed(s))"
    return (
        f"{e['mean']:+.{digits}f}{unit} ({e['ci']:.0%} CI {e['ci_low']:+.{digits}f} to "
        f"{e['ci_high']:+.{digits}f}, {e['n']} seeds)"
    )


def _series(records: pd.DataFrame, mode: str, metric: str) -> pd.DataFrame:
    rows = records[(records["mode"] == mode) & (records["metric"] == metric)]
    return rows.dropna(subset=["value"])[["fraction", "seed", "n_cells", "value"]]


def _context_free(results_dir: Path, family: str, mask_ratio: float) -> float:
    layout = ResultsLayout(results_dir)
    return gates.context_free_loss(
        data.CellTokens.load(layout.tokens(family, "corpus_train")),
        data.CellTokens.load(layout.tokens(family, "corpus_val")),
        family,
        mask_ratio,
    )


def _convergence(results_dir: Path, family: str) -> dict:
    """How many pretraining runs stopped early (converged) and how many reached the step cap."""
    runs = [
        p
        for p in results.load_payloads(results_dir, "pretrain")
        if p["run"]["family"] == family and p["run"]["fraction"] > 0
    ]
    capped = [p["name"] for p in runs if p["extra"].get("capped")]
    return {"runs": len(runs), "capped": len(capped), "capped_runs": capped}


def _margin(records: pd.DataFrame, baselines: pd.DataFrame, metric: str, n_classes: int) -> dict:
    """A metric's equivalence margin from its range on the task: chance (1 / classes) to the
    logistic regression on highly variable genes (the baselines job; test donors)."""
    ceiling_rows = baselines[(baselines["mode"] == "hvg_logreg") & (baselines["metric"] == "macro_f1")]
    ceiling = float(ceiling_rows["value"].iloc[0]) if len(ceiling_rows) else 1.0
    chance = 1.0 / n_classes
    return {
        "margin": equivalence.equivalence_margin(metric, chance=chance, ceiling=ceiling),
        "chance": chance,
        "ceiling": ceiling,
        "share": equivalence.MARGIN_SHARE,
    }


def _task_margin(data_record: dict, task: str, family: str) -> dict:
    """The equivalence margin of a task of its own: chance (1 / its classes) to the logistic regression
    on all of its genes (the data job's context ceiling, test cells)."""
    report = data_record["extra"]["tasks"][task]
    chance, ceiling = 1.0 / len(report["classes"]), float(report["context_ceiling"][family]["all_genes"])
    return {
        "margin": equivalence.equivalence_margin(tasks.metric(task), chance=chance, ceiling=ceiling),
        "chance": chance,
        "ceiling": ceiling,
        "share": equivalence.MARGIN_SHARE,
    }


def family_summary(
    profile: Profile, results_dir: Path, family: str, baselines: pd.DataFrame, data_record: dict
) -> dict:
    """Gates, controls, D and the verdict of one family, for every task its records hold.

    Parameters
    ----------
    profile
        The profile.
    results_dir
        Its results folder, ``results/<profile>``.
    family
        The model family (``scgpt``, ...).
    baselines
        The baselines job's records (:func:`scfm_lib.results.load_records` with
        ``kinds=("baselines",)``); its ``hvg_logreg`` macro-F1 is the ceiling of the margin.
    data_record
        The data job's record (``metrics/data/datasets.json``), which holds each task of its own's
        classes and ceiling.

    Returns
    -------
    dict
        ``gate0`` (:func:`scfm_lib.analysis.gates.pretraining_gate`), ``convergence`` (``runs``,
        ``capped``, ``capped_runs``), ``margin`` (``margin`` > 0, ``chance`` = 1 / classes,
        ``ceiling`` in [0, 1], ``share``), ``tasks`` (task -> its gate1, gains, D, verdict,
        equivalence, mean per fraction and ``sentence``; macro-F1 values in [0, 1], gains and D in
        [-1, 1]) and, where the profile runs them, ``negative_control`` and ``positive_control``.
    """
    ci = profile.stats.ci
    evaluated = results.load_records(results_dir, kinds=("evaluate",), family=family)
    pretrained = results.load_records(results_dir, kinds=("pretrain",), family=family)
    context_free = _context_free(results_dir, family, profile.pretrain_config().mask_ratio)
    gate0 = gates.pretraining_gate(
        _series(pretrained, "pretrain", "val_loss"), context_free, profile.study.gate_margin, ci
    )
    classes = next(
        p["extra"]["classes"] for p in results.load_payloads(results_dir, "evaluate") if p["run"]["family"] == family
    )
    margin = _margin(evaluated, baselines, "macro_f1", len(classes))
    out = {"gate0": gate0, "convergence": _convergence(results_dir, family), "margin": margin, "tasks": {}}

    negative = _control(results_dir, NEGATIVE_CONTROL, family)
    if negative is not None:
        gain = endpoints.seed_gains(_series(negative, FROZEN_MODE, "macro_f1"))
        estimate = endpoints.paired_estimate(gain.to_numpy(), ci).to_dict()
        eq = equivalence.equivalence(None, margin["margin"], differences=gain.to_numpy())
        loss = _series(negative, "pretrain", "val_loss").groupby("fraction")["value"].mean()
        out["negative_control"] = {
            "gain_frozen": estimate,
            "equivalence": eq,
            "equivalent": eq["equivalent"],
            "val_loss_by_fraction": {float(f): float(v) for f, v in loss.items()},
            "context_free_loss": context_free,
        }
    positive = _control(results_dir, POSITIVE_CONTROL, family)
    if positive is not None:
        contrast = endpoints.masking_contrast(
            _series(positive, FROZEN_MODE, "macro_f1_subtype"),
            _series(positive, FINETUNED_MODE, "macro_f1_subtype"),
            ci,
        )
        out["positive_control"] = {
            **contrast,
            "detected": bool(contrast["gain_frozen"]["ci_low"] > 0 and contrast["D"]["ci_low"] > 0),
        }
    positive_ok = out.get("positive_control", {}).get("detected", True)
    negative_ok = out.get("negative_control", {}).get("equivalent", True)

    for task, metric in task_metrics(profile).items():
        frozen, finetuned = _series(evaluated, FROZEN_MODE, metric), _series(evaluated, FINETUNED_MODE, metric)
        if frozen.empty or finetuned.empty:
            continue
        # A task of its own has its own classes and ceiling; the downstream tasks share the annotation's.
        task_margin = _task_margin(data_record, task, family) if task in profile.data.tasks else margin
        gate1 = gates.representation_gate(frozen, ci)
        contrast = endpoints.masking_contrast(frozen, finetuned, ci)
        call = gates.verdict(
            gate0, gate1, contrast, task_margin["margin"], positive_ok, negative_ok, profile.study.power
        )
        result = {
            "metric": metric,
            "task": task_words(profile, task),
            "frozen_mode": FROZEN_MODE,
            "finetuned_mode": FINETUNED_MODE,
            "margin": task_margin,
            "gate1": gate1,
            **contrast,
            **call,
            "mean_by_fraction": {
                mode: {float(f): float(v) for f, v in s.groupby("fraction")["value"].mean().items()}
                for mode, s in ((FROZEN_MODE, frozen), (FINETUNED_MODE, finetuned))
            },
        }
        result["sentence"] = sentence(family, result, gate0)
        out["tasks"][task] = result
    return out


def _control(results_dir: Path, kind: str, family: str) -> pd.DataFrame | None:
    try:
        return results.load_records(results_dir, kinds=(kind,), family=family)
    except FileNotFoundError:  # the profile runs no such control
        return None


def sentence(family: str, task: dict, gate0: dict) -> str:
    """The verdict of one family and task in one sentence, with its numbers.

    Parameters
    ----------
    family
        The model family.
    task
        The task's result (an entry of ``family_summary(...)["tasks"]`` before its sentence):
        ``task`` (words), ``verdict``, ``reason``, ``D``, ``gate1``, ``detectable_D`` and
        ``equivalence``.
    gate0
        The family's pretraining gate (:func:`scfm_lib.analysis.gates.pretraining_gate`).

    Returns
    -------
    str
        A Markdown sentence: the family and task in bold, the verdict and the numbers behind it.
    """
    D = format_estimate(task["D"])
    head = f"**{family}**, {task['task']}: **{task['verdict']}**"
    if task["verdict"] == "nothing to mask":
        if not gate0["passed"]:
            loss = gate0["loss_by_fraction"][max(gate0["loss_by_fraction"])]
            return (
                f"{head}: {task['reason']} (largest corpus {loss:.4g} against {gate0['context_free_loss']:.4g} for "
                f"the context-free predictor; drop from the smallest corpus "
                f"{format_estimate(gate0['drop_smallest_to_largest'], 4)})."
            )
        g = task["gate1"]
        return (
            f"{head}: {task['reason']} (largest corpus minus random init "
            f"{format_estimate(g['largest_minus_random_init'])}; minus the smallest corpus "
            f"{format_estimate(g['largest_minus_smallest'])} macro-F1). D would be {D}."
        )
    if task["verdict"] == "inconclusive":
        return (
            f"{head}: D = {D}; the design could detect D of {task['detectable_D']:.3f} with 80% power, and "
            f"the equivalence margin is +-{task['equivalence']['margin']:.3f}."
        )
    return f"{head}: D = {D} ({task['reason']})."


def secondary_endpoints(profile: Profile, results_dir: Path) -> pd.DataFrame:
    """Every other series (mode x metric of each family) with its tests, gain and slope.

    Each series gets its lack-of-fit test, its seed-paired gain and per-seed slope (t-intervals),
    and the gain's t-test p-value adjusted by Holm over all rows (the primary endpoint is not among
    them). Slopes are quoted only where the line is not rejected. Series with fewer than two
    pretrained fractions or seeds are left out.

    Parameters
    ----------
    profile
        The profile.
    results_dir
        Its results folder, ``results/<profile>``.

    Returns
    -------
    pandas.DataFrame
        One row per series: family, mode, metric, n_seeds, gain with gain_ci_low and gain_ci_high
        (largest minus smallest corpus, in the metric's units), p and p_holm (in [0, 1]),
        lack_of_fit_F (>= 0) and lack_of_fit_p (in [0, 1]), linear (the line not rejected at
        0.05, or not testable), slope with slope_ci_low and slope_ci_high (change per tenfold more cells; NaN where
        not linear). No rows (and no columns) when no series qualifies.
    """
    rows = []
    for family in profile.families:
        records = results.load_records(results_dir, kinds=("evaluate", "scib"), family=family)
        for (mode, metric), series in records.groupby(["mode", "metric"]):
            series = series.dropna(subset=["value"])
            if (mode, metric) == (FROZEN_MODE, "macro_f1") or (mode, metric) == (FINETUNED_MODE, "macro_f1"):
                continue  # the primary endpoint's ingredients
            if mode == "gene_programs" and metric == "chance_ap":
                continue  # a property of the vocabulary, the same for every checkpoint
            pretrained = series[series["fraction"] > 0]
            if pretrained["fraction"].nunique() < 2 or pretrained["seed"].nunique() < 2:
                continue
            fit = linearity.lack_of_fit(series)
            gain = endpoints.seed_gains(series)
            g = endpoints.paired_estimate(gain.to_numpy(), profile.stats.ci)
            slopes = _seed_slopes(pretrained)
            s = endpoints.paired_estimate(slopes, profile.stats.ci)
            linear = bool(np.isnan(fit["p"]) or fit["p"] >= 0.05)
            rows.append(
                {
                    "family": family,
                    "mode": mode,
                    "metric": metric,
                    "n_seeds": g.n,
                    "gain": g.mean,
                    "gain_ci_low": g.ci_low,
                    "gain_ci_high": g.ci_high,
                    "p": g.p_t,
                    "lack_of_fit_F": fit["F"],
                    "lack_of_fit_p": fit["p"],
                    "linear": linear,
                    "slope": s.mean if linear else np.nan,
                    "slope_ci_low": s.ci_low if linear else np.nan,
                    "slope_ci_high": s.ci_high if linear else np.nan,
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        from scfm_lib import stats

        table["p_holm"] = stats.adjust_pvalues(table["p"].to_numpy(), "holm")
    return table


def _seed_slopes(pretrained: pd.DataFrame) -> np.ndarray:
    """Each seed's OLS slope of value on log10(cells) over its pretrained fractions (seeds with >= 2)."""
    out = []
    for _, rows in pretrained.groupby("seed"):
        x = np.log10(rows["n_cells"].to_numpy(float))
        if len(np.unique(x)) >= 2:
            y = rows["value"].to_numpy(float)
            out.append(float(np.polyfit(x, y, 1)[0]))
    return np.array(out)


def build_summary(profile: Profile, results_dir: str | Path) -> dict:
    """The whole summary of a profile (see the module docstring).

    Parameters
    ----------
    profile
        The profile.
    results_dir
        Its results folder, ``results/<profile>``.

    Returns
    -------
    dict
        ``profile``, ``title``, ``data`` (:func:`data_summary`), ``design`` (budgets, readout,
        fractions, seeds, margins, power, ci), ``families`` (family -> :func:`family_summary`),
        ``verdicts`` (family, task, verdict, sentence), ``secondary`` (the rows of
        :func:`secondary_endpoints`) and ``provenance``.
    """
    results_dir = Path(results_dir)
    baselines = results.load_records(results_dir, kinds=("baselines",))
    pretrained = [f for f in profile.fractions if f > 0]
    ends = [min(pretrained), max(pretrained)]
    model_config = profile.model_config(vocab_size=16)
    data_record = io.read_json(ResultsLayout(results_dir).metrics("data", "datasets"))
    families = {
        family: family_summary(profile, results_dir, family, baselines, data_record) for family in profile.families
    }
    secondary = secondary_endpoints(profile, results_dir)
    return {
        "profile": profile.name,
        "title": profile.title,
        "data": data_summary(profile, data_record),
        "design": {
            "pretrain_budget": profile.pretrain_config().budget,
            "max_steps": profile.pretrain_config().max_steps,
            "readout": {"layer": model_config.readout_layer, "pooling": model_config.pooling},
            "fractions": profile.fractions,
            "seeds": profile.seeds,
            "seeds_by_fraction": {str(k): v for k, v in profile.seeds_by_fraction.items()},
            "endpoint_fractions": ends,
            "n_seeds_at_endpoints": min(len(profile.seeds_at(f)) for f in ends + [0.0] if f in profile.fractions),
            "finetune_seeds": profile.study.finetune_seeds,
            "gate_margin": profile.study.gate_margin,
            "margin_share": equivalence.MARGIN_SHARE,
            "power": profile.study.power,
            "ci": profile.stats.ci,
            "context_genes": profile.data.context_genes,
        },
        "families": families,
        "verdicts": [
            {"family": f, "task": t, "verdict": r["verdict"], "sentence": r["sentence"]}
            for f, s in families.items()
            for t, r in s["tasks"].items()
        ],
        "secondary": secondary.to_dict("records"),
        "provenance": io.provenance({"profile": profile.name}, data_record["provenance"]["data_sha256"]),
    }


def write_summary(profile: Profile, results_dir: str | Path, book_dir: str | Path | None = None) -> dict:
    """Build the summary and write ``summary.json`` to the results folder (and the book's copy).

    Parameters
    ----------
    profile
        The profile.
    results_dir
        Its results folder, ``results/<profile>``.
    book_dir
        The book's folder of the profile, ``book/<profile>``, for the committed copy; None for none.

    Returns
    -------
    dict
        The summary written (:func:`build_summary`).
    """
    summary = build_summary(profile, results_dir)
    path = ResultsLayout(results_dir).summary
    io.write_json(path, summary)
    if book_dir is not None:
        io.write_json(Path(book_dir) / path.name, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring): write the summary, print each verdict's sentence.

    Parameters
    ----------
    argv
        The arguments (``--profile``, ``--profiles-dir``, ``--results-dir``, ``--book-dir``); None
        for ``sys.argv``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m scfm_lib.study.summary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", required=True)
    parser.add_argument("--profiles-dir", default=None)
    parser.add_argument("--results-dir", required=True)
    parser.add_argument("--book-dir", default=None)
    args = parser.parse_args(argv)
    summary = write_summary(load_profile(args.profile, args.profiles_dir), args.results_dir, args.book_dir)
    for row in summary["verdicts"]:
        print(row["sentence"])


if __name__ == "__main__":
    main()
