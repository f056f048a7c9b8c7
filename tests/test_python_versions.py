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

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "tests" / ".tools" / "py311"
CANDIDATES = ("python3.11", "/root/.pyenv/versions/3.11.7/bin/python")
TESTS = ["tests/test_events.py", "tests/test_pipeline.py", "tests/test_fold.py"]


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
