"""Generated pages: the table of contents follows the profile; parameter tables follow the notebooks."""
import nbformat
import pytest
import yaml

from scfm_lib import book
from scfm_lib.config import load_profile


def test_toc_lists_every_chapter_and_run(tmp_path):
    profile = load_profile("tiny")
    path = book.write_toc(profile, tmp_path)
    toc = yaml.safe_load(path.read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    runs = [s["file"] for s in toc["parts"][-1]["chapters"][0]["sections"]]
    assert toc["root"] == "book/tiny/intro"
    assert [f"book/tiny/{name}" for name, _ in book.CHAPTERS] == files[:len(book.CHAPTERS)]
    assert len(runs) == 3 * len(profile.runs()) + 1                 # pretrain, evaluate, sweep + baselines
    assert "book/tiny/runs/evaluate_geneformer_f0.1_s1" in runs
    assert "book/tiny/runs/sweep_geneformer_f0.1_s1" in runs


def test_profile_without_a_sweep_has_no_budget_chapter():
    profile = load_profile("tiny")
    profile.evaluate.label_budgets, profile.evaluate.step_budgets = [], []
    toc = book.toc(profile)
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/tiny/budgets" not in files and "book/tiny/recommendations" in files
    assert book.run_templates(profile) == ("pretrain", "evaluate")


def test_committed_toc_is_the_quick_profile(repo):
    committed = yaml.safe_load((repo / "_toc.yml").read_text())
    quick = load_profile("quick")
    assert committed == book.toc(quick, book.included_profiles(quick, repo))


def test_included_profile_gets_its_chapters_and_runs(tmp_path):
    tiny, quick = load_profile("tiny"), load_profile("quick")
    tiny.book_includes = ["quick"]
    assert book.included_profiles(tiny, tmp_path) == []          # not run yet: left out
    (tmp_path / "book" / "quick").mkdir(parents=True)
    (tmp_path / "book" / "quick" / "intro.ipynb").write_text("{}")
    toc = yaml.safe_load(book.write_toc(tiny, tmp_path).read_text())
    assert toc["root"] == "book/tiny/intro"
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/quick/intro" in files and "book/quick/masking" in files
    appendix = toc["parts"][-1]["chapters"]
    assert [c["file"] for c in appendix] == ["book/tiny/runs", "book/quick/runs"]
    assert len(appendix[1]["sections"]) == 3 * len(quick.runs()) + 1


def test_every_notebook_template_has_documented_typed_parameters(repo):
    templates = sorted((repo / "nbs").glob("*.ipynb"))
    assert {p.stem for p in templates} >= {"data", "pretrain", "evaluate", "baselines", "intro", "masking"}
    for path in templates:
        params = book.notebook_parameters(path)
        names = [p["name"] for p in params]
        assert names[:3] == ["profile", "profiles_dir", "results_dir"], path
        nb = nbformat.read(path, as_version=4)
        assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code"), f"{path}: outputs not stripped"
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), f"{path}: parameters must be the first code cell"


def test_parameter_tables(repo):
    text = book.parameter_tables(repo / "nbs")
    assert "### `nbs/pretrain.ipynb`" in text
    assert "| `fraction` | `float` | `0.1` |" in text


def test_parameter_line_without_comment_is_refused(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("seed: int = 0")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, tmp_path / "x.ipynb")
    with pytest.raises(ValueError, match="# what it is"):
        book.notebook_parameters(tmp_path / "x.ipynb")
