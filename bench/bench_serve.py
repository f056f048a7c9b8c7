"""`tavus-callbacks serve` with durable writes against the vendor's sample Flask receiver, under the same load.

    .venv/bin/python bench/bench_serve.py [--seconds 10] [--connections 16] [--loader auto|wrk|python]

Starts `serve` on a fresh SQLite file (every event committed to disk before its 200) and the vendor's receiver
(bench/vendor_flask_receiver.py, run as the vendor runs it: `python server.py`, Flask's debug server),
drives each in turn with DISTINCT callbacks (8 kinds, each conversation a new id, times that move on),
prints requests/s of each and their ratio (target: serve at least 3x), then checks that every event
`serve` acknowledged is in the store. The load generator is wrk (`apt-get install wrk`) with a Lua script
written by this file, or, without wrk, a Python one: processes x threads with keep-alive connections.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.serve_fixture import ServeProcess, start_serve  # noqa: E402
from support.servers import free_port  # noqa: E402

TOKEN = "bench-token-" + "0" * 24

# The eight kinds of callback in a conversation; %(cid)s, %(ts)s, %(r)s are filled per request.
TEMPLATES = [
    '{"properties":{"replica_id":"%(r)s"},"conversation_id":"%(cid)s","webhook_url":"https://example.com/webhook",'
    '"event_type":"system.replica_joined","message_type":"system","timestamp":"%(ts)s"}',
    '{"properties":{"face_id":"f1a2b3c4d5e"},"conversation_id":"%(cid)s","webhook_url":"https://example.com/webhook",'
    '"event_type":"system.pal_joined","message_type":"system","timestamp":"%(ts)s"}',
    '{"conversation_id":"%(cid)s","properties":{"guardrail":"no_medical_advice"}}',
    '{"conversation_id":"%(cid)s","objective_name":"collect_email","output_variables":{"email":"a@example.com"}}',
    '{"properties":{"replica_id":"%(r)s","shutdown_reason":"participant_left_timeout reached"},'
    '"conversation_id":"%(cid)s","webhook_url":"https://example.com/webhook","event_type":"system.shutdown",'
    '"message_type":"system","timestamp":"%(ts)s"}',
    '{"properties":{"replica_id":"%(r)s","transcript":[{"role":"system","content":"You are a helpful assistant."},'
    '{"role":"user","content":"Hi."},{"role":"assistant","content":"Hello! How can I help?"},'
    '{"role":"user","content":"Quick question about my order."},'
    '{"role":"assistant","content":"Sure, what is the order number?"}]},"conversation_id":"%(cid)s",'
    '"webhook_url":"https://example.com/webhook","event_type":"application.transcription_ready",'
    '"message_type":"application","timestamp":"%(ts)s"}',
    '{"properties":{"replica_id":"%(r)s","storage_provider":"s3","storage_uri":"s3://acme-recordings/%(cid)s/%(cid)s.mp4",'
    '"duration":309},"conversation_id":"%(cid)s","webhook_url":"https://example.com/webhook",'
    '"event_type":"application.recording_ready","message_type":"application","timestamp":"%(ts)s"}',
    '{"properties":{"replica_id":"%(r)s","analysis":"## Summary\\n- one participant, attentive, well lit."},'
    '"conversation_id":"%(cid)s","webhook_url":"https://example.com/webhook",'
    '"event_type":"application.perception_analysis","message_type":"application","timestamp":"%(ts)s"}',
]


def body_for(tag: str, worker: int, n: int) -> bytes:
    """The n-th distinct callback of a load worker: conversation n // 8, kind n % 8."""
    seconds, micros = divmod(n * 1000, 1_000_000)
    ts = f"2025-07-11T{6 + seconds // 3600 % 12:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micros:06d}Z"
    return (TEMPLATES[n % 8] % {"cid": f"c{tag}{worker}x{n // 8}", "ts": ts, "r": f"r{tag}"}).encode()


LUA = r"""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local templates = {
__TEMPLATES__
}
local n = 0
local ack = nil
local headers = {["Content-Type"] = "application/json"}

function init(args)
  tag = args[1]
  if args[2] and args[2] ~= "" then
    ack = io.open(args[2] .. "/acked-" .. id .. ".txt", "w")
    ack:setvbuf("line")
  end
end

local function ts(k)
  local seconds = math.floor(k * 1000 / 1000000)
  local micros = (k * 1000) % 1000000
  return string.format("2025-07-11T%02d:%02d:%02d.%06dZ", 6 + math.floor(seconds / 3600) % 12,
                       math.floor(seconds / 60) % 60, seconds % 60, micros)
end

request = function()
  local values = {cid = "c" .. tag .. id .. "x" .. math.floor(n / 8), ts = ts(n), r = "r" .. tag}
  local body = string.gsub(templates[(n % 8) + 1], "%${(%w+)}", values)
  n = n + 1
  return wrk.format("POST", nil, headers, body)
end

response = function(status, headers, body)
  if ack and status == 200 then
    local eid = string.match(body, '"event_id":"(%x+)"')
    if eid then ack:write(eid, "\n") end
  end
end
"""


def lua_script() -> str:
    """The same callbacks as body_for, for wrk: distinct per thread and request; acked ids to files."""
    templates = ",\n".join("[[" + t.replace("%(cid)s", "${cid}").replace("%(ts)s", "${ts}")
                           .replace("%(r)s", "${r}") + "]]" for t in TEMPLATES)
    return LUA.replace("__TEMPLATES__", templates)


@dataclass
class Result:
    """What one load run measured."""

    target: str
    requests: int = 0
    seconds: float = 0.0
    non_2xx: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    acked: set[str] = field(default_factory=set)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(target: str, url: str, seconds: float, connections: int, threads: int, ack_dir: Path | None,
            tag: str) -> Result:
    script = Path(tempfile.mkdtemp(prefix="bench-wrk-")) / "distinct_events.lua"
    script.write_text(lua_script())
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
            "-s", str(script), url, "--", tag, str(ack_dir or "")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    shutil.rmtree(script.parent, ignore_errors=True)
    result = Result(target)
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    assert done, out
    result.requests = int(done.group(1))
    result.seconds = float(done.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[done.group(3)]
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        result.non_2xx = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        result.errors = sum(int(x) for x in m.groups())
    if m := re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE):
        result.p50_ms = _ms(m.group(1))
    if m := re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE):
        result.p99_ms = _ms(m.group(1))
    if ack_dir is not None:
        for path in ack_dir.glob("acked-*.txt"):
            result.acked.update(path.read_text().split())
    return result


def keep_posting(url: str, deadline: float, body: Callable[[int], bytes],
                 note: Callable[[int, bytes, float, float], None]) -> int:
    """POST `body(n)` for n = 0, 1, ... on one keep-alive connection until the deadline, a new connection after a
    socket error; `note(status, data, latency in ms, time.time() of the answer)` for each answer. The number of
    requests that got no answer."""
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    path = url.split(port, 1)[1] or "/"
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    n, errors = 0, 0
    while time.monotonic() < deadline:
        data = body(n)
        n += 1
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = resp.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            continue
        note(resp.status, answer, (time.perf_counter() - started) * 1000, time.time())
    conn.close()
    return errors


def acked_id(status: int, data: bytes) -> str | None:
    """The event id of a 200 that stored the callback, else None."""
    found = re.search(rb'"event_id":"([0-9a-f]+)"', data) if status == 200 else None
    return found.group(1).decode() if found else None


def _python_worker(url: str, worker: int, threads: int, seconds: float, tag: str, out: Any) -> None:
    lock = threading.Lock()
    totals: dict[str, Any] = {"requests": 0, "non_2xx": 0, "errors": 0, "latencies": [], "acked": []}
    deadline = time.monotonic() + seconds

    def loop(index: int) -> None:
        latencies: list[float] = []
        acked: list[str] = []
        non_2xx = 0

        def note(status: int, data: bytes, ms: float, _at: float) -> None:
            nonlocal non_2xx
            latencies.append(ms)
            if status != 200:
                non_2xx += 1
            elif event_id := acked_id(status, data):
                acked.append(event_id)

        errors = keep_posting(url, deadline, lambda n: body_for(tag, worker * 100 + index, n), note)
        with lock:
            totals["requests"] += len(latencies)
            totals["non_2xx"] += non_2xx
            totals["errors"] += errors
            totals["latencies"] += latencies
            totals["acked"] += acked

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(totals)


def run_python(target: str, url: str, seconds: float, connections: int, processes: int, tag: str) -> Result:
    queue: multiprocessing.Queue[Any] = multiprocessing.Queue()
    per = max(1, connections // processes)
    started = time.monotonic()
    procs = [multiprocessing.Process(target=_python_worker, args=(url, w, per, seconds, tag, queue))
             for w in range(processes)]
    for p in procs:
        p.start()
    parts = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    result = Result(target, seconds=time.monotonic() - started)
    latencies: list[float] = []
    for part in parts:
        result.requests += part["requests"]
        result.non_2xx += part["non_2xx"]
        result.errors += part["errors"]
        latencies += part["latencies"]
        result.acked.update(part["acked"])
    if latencies:
        cuts = statistics.quantiles(latencies, n=100)
        result.p50_ms, result.p99_ms = cuts[49], cuts[98]
    return result


@contextlib.contextmanager
def vendor_receiver() -> Any:
    """The vendor's Flask receiver as the vendor runs it (debug server, reloader), in its own process group."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "vendor_flask_receiver.py"), str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                               start_new_session=True, cwd=tempfile.gettempdir())
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("POST", "/webhook", body=body_for("warm", 0, 0),
                             headers={"Content-Type": "application/json"})
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the vendor's Flask receiver did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        # Flask's reloader runs the app in a child process: stop the whole group this process leads.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def stored_ids(store_url: str) -> list[str]:
    """Event ids of every event object in a store (the id ends each object's name)."""
    from tavus_callbacks.stores import open_store

    keys = open_store(store_url)[0].iter_keys("")
    return [k.rsplit("_", 1)[1].removesuffix(".json") for k in keys if k.split("/")[-2:-1] == ["events"]]


def settle(db: Path, limit: float = 120.0) -> float:
    """Seconds until every conversation event stored is in its conversation.json (serve folds after answering)."""
    import sqlite3

    started = time.monotonic()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        while time.monotonic() - started < limit:
            stored, = conn.execute("SELECT count(*) FROM objects WHERE key GLOB '*/events/*' AND NOT (key GLOB "
                                   "'replicas/*' OR key GLOB 'videos/*' OR key GLOB 'unrecognized/*')").fetchone()
            folded, = conn.execute("SELECT coalesce(sum(json_array_length(body, '$.events')), 0) FROM objects "
                                   "WHERE key GLOB '*/conversation.json'").fetchone()
            if folded >= stored:
                break
            time.sleep(0.05)
    finally:
        conn.close()
    return time.monotonic() - started


def drive(target: str, url: str, args: argparse.Namespace, ack_dir: Path | None, tag: str) -> Result:
    if args.loader == "wrk":
        return run_wrk(target, url, args.seconds, args.connections, args.load_threads, ack_dir, tag)
    return run_python(target, url, args.seconds, args.connections, args.load_threads, tag)


def describe(r: Result) -> str:
    lat = f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms" if r.p50_ms is not None and r.p99_ms is not None else ""
    return (f"{r.target:<34} {r.rps:>9,.0f} req/s  ({r.requests:,} in {r.seconds:.1f} s; {lat}; "
            f"non-2xx {r.non_2xx}, socket errors {r.errors})")


def filesystem_of(path: Path) -> str:
    """The type of the file system holding `path` (from /proc/mounts), e.g. ext4 or tmpfs."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def merge(results: list[Result]) -> Result:
    total = Result(results[0].target)
    for r in results:
        total.requests += r.requests
        total.seconds += r.seconds
        total.non_2xx += r.non_2xx
        total.errors += r.errors
        total.acked |= r.acked
    total.p50_ms = statistics.median(r.p50_ms for r in results if r.p50_ms is not None) if results else None
    total.p99_ms = max((r.p99_ms for r in results if r.p99_ms is not None), default=None)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load duration per server and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each driving serve then the vendor's")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--load-threads", type=int, default=2, help="wrk threads (or Python load processes)")
    parser.add_argument("--workers", type=int, default=None, help="serve worker processes (default: one per CPU)")
    parser.add_argument("--threads", type=int, default=8, help="threads per serve worker")
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--store-parent", default=None,
                        help="folder to make the store in (default: the system temp folder; use a real disk)")
    args = parser.parse_args()
    if args.loader == "auto":
        args.loader = "wrk" if shutil.which("wrk") else "python"
    workers = args.workers or len(os.sched_getaffinity(0))
    store = Path(tempfile.mkdtemp(prefix="bench-serve-store-", dir=args.store_parent))
    fs = filesystem_of(store)
    ack_dir = Path(tempfile.mkdtemp(prefix="bench-serve-acks-")) if args.loader == "wrk" else None
    print(f"load: {args.loader}, {args.connections} connections, {args.load_threads} threads, "
          f"{args.rounds} rounds of {args.seconds:g} s per server, distinct callbacks "
          "(8 kinds, a new conversation every 8)")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; store: {store} on {fs}"
          + (" (fsync is a no-op there: not durable)" if fs in ("tmpfs", "ramfs") else ""))

    label = f"serve ({workers} workers, {'durable' if fs not in ('tmpfs', 'ramfs') else 'on tmpfs: not durable'})"
    ours_runs: list[Result] = []
    vendor_runs: list[Result] = []
    store_url = f"sqlite:///{store / 'tavus.db'}"
    server: ServeProcess = start_serve(store_url=store_url, tokens=(TOKEN,), workers=workers,
                                       threads=args.threads)
    try:
        with vendor_receiver() as url:
            for n in range(args.rounds):
                tag = uuid.uuid4().hex[:6]
                ours_runs.append(drive(label, server.callback_url(), args, ack_dir, tag))
                # Its rate counts the time its derived work takes to catch up (before the vendor's round).
                catch_up = settle(store / "tavus.db")
                ours_runs[-1].seconds += catch_up
                print(f"  round {n + 1}: serve's states caught up {catch_up:.2f} s after the load stopped", flush=True)
                vendor_runs.append(drive("vendor Flask receiver (stores nothing)", url, args, None, tag))
                print(f"  round {n + 1}: serve {ours_runs[-1].rps:,.0f} req/s, vendor {vendor_runs[-1].rps:,.0f} "
                      f"req/s, ratio {ours_runs[-1].rps / vendor_runs[-1].rps:.2f}x", flush=True)
    finally:
        server.stop()
        shutil.rmtree(server.log_dir, ignore_errors=True)

    ours, vendor = merge(ours_runs), merge(vendor_runs)
    on_disk = stored_ids(store_url)
    missing = ours.acked - set(on_disk)
    print(describe(ours))
    print(describe(vendor))
    ratios = [o.rps / v.rps for o, v in zip(ours_runs, vendor_runs, strict=True)]
    print(f"ratio serve / vendor: {ours.rps / vendor.rps:.2f}x over all rounds, "
          f"median round {statistics.median(ratios):.2f}x  (target >= 3.00x)")
    print(f"acknowledged by serve: {len(ours.acked):,} events; on disk: {len(on_disk):,} event objects "
          f"({len(set(on_disk)):,} distinct); acknowledged but missing: {len(missing)}")
    shutil.rmtree(store, ignore_errors=True)
    if ack_dir:
        shutil.rmtree(ack_dir, ignore_errors=True)
    return 1 if missing or ours.non_2xx else 0


if __name__ == "__main__":
    sys.exit(main())
