"""Reconcile budget benchmark: how long `tavus-callbacks reconcile --budget B` runs against an API that misbehaves.

For each behaviour of the fake vendor API (tests/support/fake_tavus.py) the real command runs in its own process
on a fresh SQLite file; the script prints the wall-clock time from start to exit, how far past B it ended
(target: at most 2 s), the exit status, the summary line it printed and its first `failed:` line, if any.

    .venv/bin/python bench/bench_reconcile_budget.py [--budget 8] [--only dripping,stalled]

Behaviours: `dripping` (every answer sent one byte every 0.2 s), `stalled` (answers never come), `500` (every
answer a 500), `429-nan` (429 with `Retry-After: nan`), `429-huge` (429 with `Retry-After: 1000000000`),
`not-json` (200 with an HTML body), `refused` (401).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.fake_tavus import API_KEY, FakeTavus, conversation_callbacks, running_fake_tavus  # noqa: E402
from support.serve_fixture import serve_command  # noqa: E402

FOREVER = 10_000


def _conversations(fake: FakeTavus) -> None:
    from datetime import UTC, datetime, timedelta
    start = datetime.now(UTC) - timedelta(minutes=30)
    for n in range(3):
        fake.add(f"cbudget{n}", conversation_callbacks(f"cbudget{n}", start))


BEHAVIOURS: dict[str, Callable[[FakeTavus], None]] = {
    "dripping": lambda f: f.fail("/v2/conversations", status=0, drip=0.2, times=FOREVER),
    "stalled": lambda f: f.fail("/v2/conversations", status=0, delay=3600, times=FOREVER),
    "500": lambda f: f.fail("/v2/conversations", status=500, times=FOREVER),
    "429-nan": lambda f: f.fail("/v2/conversations", status=429, retry_after="nan", times=FOREVER),
    "429-huge": lambda f: f.fail("/v2/conversations", status=429, retry_after="1000000000", times=FOREVER),
    "not-json": lambda f: f.fail("/v2/conversations?", status=200, body=b"<html>maintenance</html>", times=FOREVER),
    "refused": lambda f: f.fail("/v2/conversations", status=401, times=FOREVER),
}


def run(behaviour: str, budget: float) -> tuple[float, int, str]:
    """(seconds from start to exit, exit status, the summary line) of one reconcile against `behaviour`."""
    with tempfile.TemporaryDirectory() as folder, running_fake_tavus() as fake:
        _conversations(fake)
        BEHAVIOURS[behaviour](fake)
        env = {**os.environ, "TAVUS_API_KEY": API_KEY, "TAVUS_API_URL": fake.url, "TAVUS_API_MAX_RPM": "0"}
        command = [*serve_command(), "reconcile", "--store", f"sqlite:///{Path(folder, 'tavus.db')}",
                   "--budget", f"{budget:g}"]
        started = time.monotonic()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=budget + 600)
        elapsed = time.monotonic() - started
    line = next((x for x in done.stdout.splitlines() if x.startswith("reconcile:")), done.stdout.strip()[-200:])
    failed = next((x for x in done.stderr.splitlines() if x.startswith("failed:")), "")
    return elapsed, done.returncode, f"{line} [{failed}]" if failed else line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=8.0, help="seconds given to each run (default 8)")
    parser.add_argument("--only", default=",".join(BEHAVIOURS), help="comma-separated behaviours to run")
    args = parser.parse_args()
    worst = 0.0
    print(f"reconcile --budget {args.budget:g} against an API that misbehaves (target: ends within B + 2 s)")
    for behaviour in args.only.split(","):
        elapsed, code, line = run(behaviour.strip(), args.budget)
        worst = max(worst, elapsed - args.budget)
        print(f"{behaviour:>9}: {elapsed:6.2f} s ({elapsed - args.budget:+.2f} s past B), exit {code}: {line}")
    verdict = "met" if worst <= 2.0 else "missed"
    print(f"worst: {worst:+.2f} s past the budget; target <= +2 s: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
