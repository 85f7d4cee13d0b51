"""What the study ran on, for ``summary.json``: the corpus (datasets, cells, vocabulary) and each
narrow task's dataset, split and cells, from the data job's record. :mod:`scfm_lib.study.summary`
re-exports :func:`data_summary`.
"""

from __future__ import annotations

from scfm_lib.config import Profile
from scfm_lib.study import tasks


def data_summary(profile: Profile, data_record: dict) -> dict:
    """What the study ran on, from the data job's record.

    The corpus (datasets, cells, vocabulary) and, per narrow task, its dataset, how it is split and
    the cells of each split.

    Parameters
    ----------
    profile
        The profile (its ``data`` section names the datasets, the split and the tasks).
    data_record
        The data job's record (``metrics/data/datasets.json``): its records hold ``corpus_cells``,
        ``downstream_cells`` and ``ood_cells``, its ``extra`` the vocabulary, the corpus
        composition, the split cells and each task of its own's report.

    Returns
    -------
    dict
        ``source``, ``corpus`` (dataset names, or the synthetic atlas), ``corpus_cells``,
        ``vocab_size``, ``corpus_composition`` (None when not recorded) and ``tasks`` (task ->
        words, dataset, cells, split and, where known, split cells, classes, dropped classes, the
        shares of its genes in the vocabulary in [0, 1] and its context ceiling).
    """
    values = {r["metric"]: r["value"] for r in data_record["records"]}
    extra = data_record.get("extra", {})
    d = profile.data
    registry = d.source == "registry"
    if d.split_by and d.test_groups:
        split = tasks.group_split_words(d.split_by, d.test_groups, d.label_key)
    else:
        split = f"whole {d.split_by} groups per split (train, validation, test)" if d.split_by else "random cells"
    ood_split = "every cell whose type the annotation task trains on, scored with its classifiers (never trained on)"
    if d.ood_label_map:
        ood_split += f"; labels mapped onto {d.downstream}'s names ({len(d.ood_label_map)} types)"
    narrow = {
        "annotation": {
            "words": d.task_words["annotation"],
            "dataset": d.downstream if registry else "synthetic atlas: downstream donors",
            "cells": int(values["downstream_cells"]),
            "reserved_from_corpus_dataset": bool(d.downstream_cells),
            "split": split,
            "split_cells": extra.get("downstream_split_cells"),
        }
    }
    if values.get("ood_cells"):
        narrow["annotation_ood"] = {
            "words": d.task_words["annotation_ood"],
            "dataset": d.ood if registry else "synthetic atlas: an unseen technology",
            "cells": int(values["ood_cells"]),
            "split": ood_split,
        }
    for name, report in extra.get("tasks", {}).items():  # tasks of their own (data.tasks)
        narrow[name] = {
            "words": report["words"],
            "dataset": report["dataset"],
            "cells": int(report["cells"]),
            "split": report["split"],
            "split_cells": report["split_cells"],
            "classes": report["classes"],
            "dropped_classes": report["dropped_classes"],
            "genes_in_vocabulary": {
                "as_read": report["harmonization"]["share_before"],
                "harmonized": report["harmonization"]["share_after"],
            },
            "context_ceiling": report["context_ceiling"],
        }
    return {
        "source": d.source,
        "corpus": list(d.corpus) if registry else "synthetic atlas (scfm_lib.atlas)",
        "corpus_cells": int(values["corpus_cells"]),
        "vocab_size": extra.get("vocab_size"),
        "corpus_composition": extra.get("corpus_composition") or None,
        "tasks": narrow,
    }
