"""The soak in short: `serve` on moto through the fault-injecting proxy (bench/soak.py) loses and duplicates
nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "bench" / "soak.py"
SHORT_EVENTS = 300
FAULT_RATE = 0.2


@pytest.mark.slow
def test_a_short_soak_through_store_faults_loses_and_duplicates_nothing() -> None:
    run = subprocess.run([sys.executable, str(SOAK), "--events", str(SHORT_EVENTS), "--rate", str(FAULT_RATE),
                          "--senders", "12", "--minutes", "3", "--seed", "11", "--json"],
                         capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert run.stdout.strip(), run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    summary = "\n".join(run.stdout.strip().splitlines()[:-1])
    audit = report["audit"]
    assert (audit["lost"], audit["duplicated"], audit["unacknowledged_lost"]) == (0, 0, 0), summary
    assert audit["corrupt"] == audit["fold_mismatches"] == audit["derived_mismatches"] == 0, summary
    assert report["events"] == report["acknowledged"] == audit["stored_events"] == SHORT_EVENTS, summary
    assert report["deliveries"] > report["events"] and report["answers"].get("200 duplicate", 0) > 0, summary
    assert audit["conversations"] >= SHORT_EVENTS // 15, summary
    # The faults really happened, including the ambiguous ones (applied upstream, reported lost or failed).
    assert report["faults_injected"] >= 0.1 * report["store_requests"] > 0, summary
    assert report["faults_by_kind"].get("drop_after", 0) > 0 and report["faults_by_kind"].get("late_500", 0) > 0
    assert report["ok"] is True and run.returncode == 0, summary
