"""The study steps that the workflow runs before the chapters: scIB metrics and budget grids."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from scfm_lib import io
from scfm_lib.config import ConfigError, load_profile
from scfm_lib.layout import ResultsLayout
from scfm_lib.study import budgets, scib


def test_scib_aggregates_are_the_table_columns_it_has():
    table = pd.DataFrame(
        {"Bio conservation": [0.5, 0.25], "Total": [0.125, 0.0625], "kBET": [1.0, 1.0]}, index=["run", "pca"]
    )
    records = scib.aggregate_records(table, "pca")
    # a dataset of one batch: no batch-correction column, so no batch-correction record
    assert records == [
        {"mode": "scib", "metric": "bio_conservation", "value": 0.25},
        {"mode": "scib", "metric": "scib_total", "value": 0.0625},
    ]


def test_scib_table_reads_back_what_was_written(tmp_path):
    table = pd.DataFrame({"Bio conservation": [0.1 / 3, np.pi], "Isolated labels": [2 / 7, 0.0]}, index=["r", "pca"])
    table = table.rename_axis("Embedding")
    io.write_json(ResultsLayout(tmp_path).scib_table, {"index": "Embedding", "table": table.to_dict("index")})
    pd.testing.assert_frame_equal(scib.load_table(tmp_path), table)  # exact: JSON keeps every float digit


def test_budget_grid_reads_back_with_undefined_values_as_nan(tmp_path):
    grid = pd.DataFrame(
        {
            "label_budget": [0.1, 1.0],
            "step_budget": [5, 20],
            "masking_index": [np.nan, 0.25],
            "probe_slope": [-0.5, 0.1],
        }
    )
    path = tmp_path / "budgets.json"
    io.write_json(path, {"grids": {"scgpt": grid.to_dict("records")}})
    assert json.loads(path.read_text())["grids"]["scgpt"][0]["masking_index"] is None  # NaN is written as null
    back = budgets.grid_frame(io.read_json(path)["grids"]["scgpt"])
    pd.testing.assert_frame_equal(back, grid)


def test_budgets_refuse_a_profile_without_a_sweep(repo, tmp_path):
    tiny = load_profile("tiny", repo / "profiles")  # the workshop profile runs no sweep
    with pytest.raises(ConfigError, match="no budget sweep"):
        budgets.build_budgets(tiny, tmp_path)


def test_the_summary_imports_no_torch(venv_env, repo):
    # The summarize job and the chapters that read the summary need no model code: torch's import is ~5 s.
    code = "import sys, scfm_lib.study.summary; assert 'torch' not in sys.modules, 'torch imported'"
    run = subprocess.run([sys.executable, "-c", code], env=venv_env, cwd=repo, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
