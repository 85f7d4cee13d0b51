"""tools/compare_runs.py: two runs with the same findings compare identical, whatever their commit and time;
a changed metric, weight or missing file is reported."""

import importlib.util
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("compare_runs", REPO / "tools" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)


def _run(root: Path, commit: str, macro_f1: float = 0.5, weights: str = "ab12") -> Path:
    (root / "metrics" / "evaluate").mkdir(parents=True)
    (root / "checkpoints" / "scgpt_f1.0_s0").mkdir(parents=True)
    (root / "metrics" / "evaluate" / "scgpt_f1.0_s0.json").write_text(
        json.dumps(
            {
                "records": [{"mode": "finetune", "metric": "macro_f1", "value": macro_f1}],
                "extra": {"seconds": 12.5 if commit == "a" else 13.0},
                "provenance": {"git_commit": commit, "created_utc": commit, "data_sha256": {"downstream": "ff00"}},
            }
        )
    )
    (root / "checkpoints" / "scgpt_f1.0_s0" / "checkpoint.json").write_text(
        json.dumps({"step": 30, "weights_sha256": weights, "train_sha256": "cd", "best_val_loss": 1.0, "history": []})
    )
    (root / "summary.json").write_text(json.dumps({"commit": commit, "families": {"scgpt": {"D": 0.1}}}))
    return root


def test_same_findings_at_another_commit_and_time_are_identical(tmp_path, capsys):
    before, after = _run(tmp_path / "before", "a"), _run(tmp_path / "after", "b")
    assert compare_runs.main([str(before), str(after)]) == 0
    assert "compared 3 files" in capsys.readouterr().out


def test_a_changed_metric_weight_or_missing_file_is_reported(tmp_path, capsys):
    before = _run(tmp_path / "before", "a")
    for name, changes in {"metric": {"macro_f1": 0.51}, "weights": {"weights": "ab13"}}.items():
        after = _run(tmp_path / name, "b", **changes)
        assert compare_runs.main([str(before), str(after)]) == 1
        assert "differs" in capsys.readouterr().out
    shutil.rmtree(after / "checkpoints")
    assert compare_runs.main([str(before), str(after)]) == 1
    assert "only in before" in capsys.readouterr().out
