"""`tavus-callbacks serve` under hostile clients: idle and slowloris connections beside a normal sender, and many
unauthenticated uploads of bodies at the size limit.

    .venv/bin/python bench/bench_serve_hostile.py [--idle 2100] [--slowloris 2100] [--seconds 20]
                                                  [--uploads 900] [--only connections,uploads]

`connections`: serve (2 workers, a fresh SQLite file, the default 10 s head and body timeouts) while one process
keeps `--idle` connections open that send nothing and `--slowloris` connections that send a head one header line a
second, each opened again as soon as the server closes it (an attacker that persists). A normal sender (4 threads,
a new connection per callback, as Tavus sends them) posts distinct callbacks for `--seconds`; printed: the share of
its callbacks answered 2xx (target 100 %), its answers by status, and how many hostile connections the server
closed. `uploads`: `--uploads` clients at once, without a token, each sending a 5 MiB - 1 body; printed: serve's
resident memory (the parent and its workers, summed) before, at its peak and after (target: peak < 500 MiB),
and what the clients read back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import sys
import threading
import time
import uuid
from collections import Counter
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.serve_fixture import ServeProcess, running_serve  # noqa: E402

MAX_BODY = 5 * 1024 * 1024
CHUNK = b"x" * 65536


# -- idle and slowloris connections, in a process of their own ----------------------------------------------

async def _hostile(port: int, kind: str, stats: Counter[str], stop: asyncio.Event) -> None:
    """One hostile connection, opened again whenever the server closes it, until `stop`."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect failed"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["opened"] += 1
        stats["open"] += 1
        try:
            if kind == "slowloris":
                writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n")
            while not stop.is_set():
                try:
                    if await asyncio.wait_for(reader.read(1), timeout=1.0) == b"":
                        stats["closed by the server"] += 1
                        break
                except TimeoutError:
                    if kind == "slowloris":
                        writer.write(b"X-Slow: 1\r\n")
                        await writer.drain()
        except OSError:
            stats["closed by the server"] += 1
        finally:
            stats["open"] -= 1
            writer.close()


def hostile_process(port: int, idle: int, slowloris: int, ready: EventType, stop: EventType,
                    results: Any) -> None:
    async def main() -> None:
        stats: Counter[str] = Counter()
        halt = asyncio.Event()
        tasks = []
        for n in range(idle + slowloris):
            tasks.append(asyncio.create_task(_hostile(port, "idle" if n < idle else "slowloris", stats, halt)))
            if n % 200 == 199:
                await asyncio.sleep(0.05)  # within the listen backlog
        await asyncio.sleep(1.0)
        opened_at_start = stats["open"]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        open_at_end = stats["open"]
        halt.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        results.put({**stats, "open at start": opened_at_start, "open at end": open_at_end})

    asyncio.run(main())


def normal_sender(server: ServeProcess, seconds: float, threads: int = 4) -> tuple[Counter[str], list[float]]:
    """Distinct callbacks, a new connection each, for `seconds`: answers by status, and the times they took."""
    statuses: Counter[str] = Counter()
    took: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < deadline:
            body = json.dumps({"conversation_id": f"c{uuid.uuid4().hex[:12]}", "objective_name": "collect_email",
                               "output_variables": {"email": "a@example.com"}}).encode()
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("POST", f"/?token={server.token}", body=body,
                             headers={"Content-Type": "application/json"})
                status = str(conn.getresponse().status)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
            finally:
                conn.close()
            with lock:
                statuses[status] += 1
                took.append(time.monotonic() - started)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return statuses, took


def connections(args: argparse.Namespace) -> None:
    ctx = multiprocessing.get_context("spawn")
    with running_serve(workers=2, env={"TAVUS_MAX_BODY_BYTES": str(MAX_BODY)}) as server:
        ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
        attacker = ctx.Process(target=hostile_process,
                               args=(server.port, args.idle, args.slowloris, ready, stop, results))
        attacker.start()
        ready.wait(120)
        statuses, took = normal_sender(server, args.seconds)
        stop.set()
        stats = results.get(timeout=120)
        attacker.join(30)
    total = sum(statuses.values())
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    took.sort()
    print(f"connections: {args.idle} idle + {args.slowloris} slowloris kept open beside a normal sender, "
          f"{args.seconds:g} s")
    print(f"  normal sender: {ok} of {total} callbacks answered 2xx ({100 * ok / max(total, 1):.1f} %; target 100 %)"
          f"; answers {dict(statuses)}; median {1000 * took[len(took) // 2]:.0f} ms, "
          f"p99 {1000 * took[int(len(took) * 0.99)]:.0f} ms")
    print(f"  hostile: {stats.get('open at start', 0)} open when the sender started, {stats.get('opened', 0)} "
          f"opened in all, {stats.get('closed by the server', 0)} closed by the server, "
          f"{stats.get('connect failed', 0)} connects refused; {stats.get('open at end', 0)} open at the end")


# -- unauthenticated uploads at the size limit ------------------------------------------------------------

async def _upload(port: int, size: int, outcomes: Counter[str]) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        outcomes["connect failed"] += 1
        return
    try:
        writer.write(f"POST /?token=not-the-token-0123456789 HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {size}\r\n\r\n".encode())
        sent = 0
        while sent < size:  # the whole body first, as a client that reads only at the end
            piece = CHUNK[:min(len(CHUNK), size - sent)]
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
        line = await asyncio.wait_for(reader.readline(), timeout=60)
        outcomes[line.decode(errors="replace").strip() or "closed without an answer"] += 1
    except (OSError, TimeoutError) as exc:
        outcomes[type(exc).__name__] += 1
    finally:
        writer.close()


def uploads_process(port: int, uploads: int, size: int, results: Any) -> None:
    async def main() -> None:
        outcomes: Counter[str] = Counter()
        started = time.monotonic()
        await asyncio.gather(*(_upload(port, size, outcomes) for _ in range(uploads)))
        results.put({"outcomes": dict(outcomes), "seconds": time.monotonic() - started})

    asyncio.run(main())


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` and its descendants, MiB."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
    return total / 1024


def uploads(args: argparse.Namespace) -> None:
    ctx = multiprocessing.get_context("spawn")
    with running_serve(workers=2, env={"TAVUS_MAX_BODY_BYTES": str(MAX_BODY)}) as server:
        server.post({"conversation_id": "cwarm", "objective_name": "o"})  # both workers warm, as in use
        server.post({"conversation_id": "cwarm2", "objective_name": "o"})
        before = rss_mib(server.pid)
        results = ctx.Queue()
        clients = ctx.Process(target=uploads_process, args=(server.port, args.uploads, MAX_BODY - 1, results))
        clients.start()
        peak = before
        while clients.is_alive():
            peak = max(peak, rss_mib(server.pid))
            time.sleep(0.05)
        outcome = results.get(timeout=60)
        clients.join()
        time.sleep(1.0)
        after = rss_mib(server.pid)
        status, _ = server.post({"conversation_id": "cafter", "objective_name": "o"})
    print(f"uploads: {args.uploads} clients at once without a token, each sending {MAX_BODY - 1} bytes "
          f"({outcome['seconds']:.1f} s)")
    print(f"  serve's memory (parent + 2 workers): {before:.0f} MiB before, peak {peak:.0f} MiB "
          f"(target < 500 MiB: {'met' if peak < 500 else 'missed'}), {after:.0f} MiB after")
    print(f"  what the clients read: {outcome['outcomes']}; a callback after them: {status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=2100)
    parser.add_argument("--slowloris", type=int, default=2100)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the normal sender sends")
    parser.add_argument("--uploads", type=int, default=900)
    parser.add_argument("--only", default="connections,uploads")
    args = parser.parse_args()
    for part in args.only.split(","):
        {"connections": connections, "uploads": uploads}[part.strip()](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
