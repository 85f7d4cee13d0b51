"""The repository's Python follows one style: ruff's lint rules and formatter, configured in pyproject.toml."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    try:
        import ruff  # noqa: F401  (the binary ships inside the wheel pinned in the test extra)
    except ImportError:
        pytest.fail('ruff is not installed: `pip install -e ".[test]"` installs the pinned version')
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)


def test_ruff_check_is_clean():
    done = _ruff("check", "--no-cache", ".")
    assert done.returncode == 0, f"`ruff check .` found problems (fix them, or `ruff check --fix .`):\n{done.stdout}"


def test_ruff_format_is_clean():
    done = _ruff("format", "--no-cache", "--check", ".")
    assert done.returncode == 0, f"`ruff format .` would reformat these files:\n{done.stdout}"
