"""The study's summary: gates, controls, the masking contrast D and the verdict, per family and task.

    python -m scfm_lib.study.summary --profile quick --results-dir results/quick --book-dir book/quick

The workflow's ``summarize`` rule runs this after every evaluation and control. It writes
``results/<profile>/summary.json`` and the small committed copy ``book/<profile>/summary.json``,
which the intro, the masking chapter and the recommendations read. Records are keyed by fields
(family, task, mode, metric), never by display labels. Its data section (what the study ran on) is
built by :mod:`scfm_lib.study.data_summary`, each family's gates, controls, D and verdicts by
:mod:`scfm_lib.study.verdicts` and the secondary endpoints by :mod:`scfm_lib.study.secondary`; this
module puts them together and writes them. :func:`~scfm_lib.study.verdicts.format_estimate` is
re-exported here, where the chapters import it from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scfm_lib import io, results
from scfm_lib.analysis import equivalence
from scfm_lib.config import Profile, load_profile
from scfm_lib.layout import ResultsLayout
from scfm_lib.study.data_summary import data_summary
from scfm_lib.study.secondary import secondary_endpoints
from scfm_lib.study.verdicts import family_summary

# Re-exported: the chapters (nbs/intro, masking, pretraining, recommendations) import format_estimate from
# this module, and the notebooks do not change with the package's layout.
from scfm_lib.study.verdicts import format_estimate as format_estimate


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
