import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The tests' models are tiny, so bf16 autocast costs little even where the CPU only emulates it (AVX2):
# let the bf16 tests run everywhere (subprocesses inherit it). tests/test_train.py checks the refusal itself.
os.environ.setdefault("SCFM_ALLOW_EMULATED_BF16", "1")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def venv_env() -> dict:
    """The environment for subprocesses: this interpreter's bin folder first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MPLBACKEND", None)  # the notebooks draw inline; a non-inline backend would drop figures
    return env


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (or $SCFM_SHARED_DATA); skips with the reason where it is absent."""
    path = Path(os.environ.get("SCFM_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir() or not any(path.iterdir()):
        pytest.skip(f"real data not found at {path}: set SCFM_SHARED_DATA to a folder of datasets")
    return path
