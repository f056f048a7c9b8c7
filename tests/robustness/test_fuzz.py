"""Coverage-guided fuzzing of the pipeline (atheris): a short run here, every past crash as a regression.

The fuzz target and its checks live in bench/fuzz_pipeline.py (the long run); this file runs it
briefly in a subprocess and replays tests/robustness/fuzz_regressions/ through the same checks in-process.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZER = ROOT / "bench" / "fuzz_pipeline.py"
REGRESSIONS = Path(__file__).parent / "fuzz_regressions"
SHORT_RUN_INPUTS = 4000


def _load_fuzzer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_pipeline", FUZZER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzzer = _load_fuzzer()


@pytest.fixture
def target(tmp_path: Path) -> object:
    (tmp_path / "store").mkdir()
    return fuzzer.Target(tmp_path)


def test_a_short_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris has no wheel for this platform or Python")
    run = subprocess.run(
        [sys.executable, str(FUZZER), f"-atheris_runs={SHORT_RUN_INPUTS}", "-max_total_time=90",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert run.returncode == 0 and "no crash" in summary, (
        f"{summary}\ncrash inputs {crashes} in {tmp_path}: copy them into tests/robustness/fuzz_regressions/\n"
        f"{run.stderr[-4000:]}")
    assert f"{SHORT_RUN_INPUTS} inputs fuzzed" in summary, summary


@pytest.mark.parametrize("path", sorted(REGRESSIONS.iterdir()), ids=lambda p: p.name)
def test_past_crash_inputs_now_pass_the_checks(target: object, path: Path) -> None:
    response = target(path.read_bytes())  # type: ignore[operator]
    assert response.status in fuzzer.CONTRACT
