"""The book renders its equations without network access: MathJax is served from book/_static."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def sphinx_config():
    return yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]["config"]


def test_mathjax_is_vendored_where_the_config_points():
    config = sphinx_config()
    path = config["mathjax_path"]
    assert not path.startswith(("http:", "https:", "//")), f"mathjax_path {path} is a network address"
    static = [REPO / p for p in config["html_static_path"]]
    script = [s / path for s in static if (s / path).is_file()]
    assert script, f"{path} is in none of {config['html_static_path']}"
    # tex-chtml loads its fonts relative to itself
    fonts = script[0].parent / "output" / "chtml" / "fonts" / "woff-v2"
    assert len(list(fonts.glob("*.woff"))) > 10


@pytest.mark.integration
def test_a_page_with_maths_renders_offline(tmp_path):
    """Builds a one-page book with the project's _config.yml, checks no page loads MathJax from
    the network, then (where Chromium is installed) loads it headless from file:// and checks that
    MathJax typeset all three formulas: the TeX source is gone, mjx-container elements are there."""
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    shutil.copytree(REPO / "book" / "_static", tmp_path / "book" / "_static")
    shutil.copytree(REPO / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    (tmp_path / "index.md").write_text(
        "# Maths\n\nThe gain $g_{f,s}$ of seed $s$, and\n\n"
        "$$\nD = \\bar g_\\mathrm{frozen} - \\bar g_\\mathrm{finetuned}\n$$\n"
    )
    build = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "-W", "-n"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    page = tmp_path / "_build" / "html" / "index.html"
    html = page.read_text()
    assert "_static/mathjax/tex-chtml.js" in html and "mathjax@" not in html
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the rendered page was not checked")
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert dom.count("<mjx-container") == 3, dom[-2000:]  # two inline, one display
    assert "D = \\bar g" not in dom.split("<body", 1)[1]
