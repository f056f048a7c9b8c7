"""Coverage-guided fuzzing of the pipeline (atheris): a short run here, every past crash as a regression.

The fuzz target and its checks live in bench/fuzz_pipeline.py (the long run); this file runs it
briefly in a subprocess, replays tests/robustness/fuzz_regressions/ through the same checks in-process, and
shows the checks do fail on an answer outside the contract.
"""

from __future__ import annotations

import importlib.util
import sqlite3
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


def test_the_checks_fail_on_a_5xx(tmp_path: Path) -> None:
    target = fuzzer.Target(tmp_path)
    holder = sqlite3.connect(tmp_path / "store" / "tavus.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the file: writes fail
    try:
        with pytest.raises(fuzzer.ContractBroken, match="status 503"):
            target(b'\x00{"hello": "world"}')
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_checks_fail_on_a_file_outside_the_store(tmp_path: Path) -> None:
    target = fuzzer.Target(tmp_path)
    (tmp_path / "escaped.json").write_text("{}")
    with pytest.raises(fuzzer.ContractBroken, match="outside the store"):
        target(b'\x00{"hello": "world"}')


@pytest.mark.parametrize("key", ["../x.json", "c1/../../x.json", "/abs/x.json", "c1/events/.hidden", "a\\b/x.json",
                                 "c\x00/x.json", "plain.json"])
def test_the_key_check_refuses_unsafe_keys(key: str) -> None:
    with pytest.raises(fuzzer.ContractBroken):
        fuzzer.check_key(key)


def test_the_key_check_accepts_the_layout() -> None:
    for key in ("c123/events/20250711T064547.472000Z_conversation.system.replica_joined_ab12.json",
                "c123/conversation.json", "quarantine/2025/07/11/ab12.bin", "replicas/r1/events/x.json"):
        fuzzer.check_key(key)


def test_the_input_format() -> None:
    query = fuzzer.decode_input(b"\x00{}")
    assert (query.method, query.path, query.query, query.body) == ("POST", "/", {"token": fuzzer.TOKEN}, b"{}")
    bearer = fuzzer.decode_input(b"\x01{}")
    assert bearer.headers == {"authorization": f"Bearer {fuzzer.ROTATED_TOKEN}"} and bearer.query == {}
    assert fuzzer.decode_input(b"\x02{}").query == {} and fuzzer.decode_input(b"\x10").method == "GET"
    assert fuzzer.decode_input(b"\x40").path == "/api/healthz"
    custom = fuzzer.decode_input(b"\xe3/a/b\nX-Test: 1\n?token=mine\x00body")
    assert (custom.path, custom.query, custom.headers, custom.body) == ("/a/b", {"token": "mine"}, {"x-test": "1"},
                                                                        b"body")
