"""The core on the oldest Python it supports: the event, pipeline and fold tests again under Python 3.11.

The suite itself runs on the deploy runtime (3.13); pydantic and the standard library differ enough between
versions (e.g. which TypedDict pydantic accepts) that the core is also exercised on 3.11, in a virtualenv of
its own under tests/.tools/ (made once, then reused).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "tests" / ".tools" / "py311"
CANDIDATES = ("python3.11", "/root/.pyenv/versions/3.11.7/bin/python")
TESTS = ["tests/unit/test_events.py", "tests/unit/test_pipeline.py", "tests/unit/test_fold.py"]


def python311() -> str | None:
    for candidate in CANDIDATES:
        path = shutil.which(candidate) or (candidate if os.path.isabs(candidate) else None)
        if not path:
            continue
        probe = subprocess.run([path, "-c", "import sys, venv; print(sys.version_info[:2] == (3, 11))"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return path
    return None


@pytest.mark.skipif(sys.version_info[:2] == (3, 11), reason="the suite already runs on Python 3.11")
def test_the_core_passes_its_tests_on_python_311() -> None:
    interpreter = python311()
    if interpreter is None:
        pytest.skip("no Python 3.11 on this machine")
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([interpreter, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", str(ROOT),
                    "pytest>=8", "pytest-timeout", "hypothesis>=6.100", "jsonschema>=4.18"],
                   check=True, capture_output=True)
    result = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *TESTS],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def declared_pythons() -> list[str]:
    """Interpreters on this machine of each minor version the package declares besides the suite's own."""
    found = []
    for minor in (11, 12, 13):
        if sys.version_info[:2] == (3, minor):
            continue
        pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
        for candidate in (f"python3.{minor}", *(str(p) for p in sorted(pyenv.glob(f"3.{minor}.*/bin/python")))):
            path = shutil.which(candidate)
            if path and subprocess.run([path, "-c", f"import sys; sys.exit(sys.version_info[:2] != (3, {minor}))"],
                                       capture_output=True).returncode == 0:
                found.append(path)
                break
    return found


@pytest.mark.parametrize("interpreter", declared_pythons() or [pytest.param(None, marks=pytest.mark.skip("none here"))])
def test_every_extra_installs_on_every_declared_python(interpreter: str) -> None:
    """`pip install -e '.[aws,gcp,azure,dev]'` resolves to wheels that exist for that Python (a dry run)."""
    result = subprocess.run([interpreter, "-m", "pip", "install", "--dry-run", "-q", "--disable-pip-version-check",
                             "--ignore-installed", "-e", f"{ROOT}[aws,gcp,azure,dev]"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
