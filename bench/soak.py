"""The soak: `serve` on the S3 emulator behind a fault-injecting proxy, fed like Tavus would, then audited.

    moto server  <-- faulty_proxy (delays, dropped connections, 500s, 503s at --rate)  <-- serve (2 workers)
                                                                                          ^
    sender threads: many conversations at once, out of order, with repeats, retrying every non-2xx

At the end the bucket is read directly (not through the proxy) and checked:
  - every event acknowledged is stored, every event sent is stored exactly once (lost 0, duplicated 0);
  - every stored document's id is the SHA-256 of its payload and names its object;
  - every conversation.json equals the fold of its stored events computed offline
    (the recording-check facts, which depend on the bucket at apply time, are taken from the state).

    python bench/soak.py --events 5000 --rate 0.1            # a set number of events
    python bench/soak.py --minutes 10 --events 100000        # or for a set time
    python bench/soak.py --backend file --events 1000        # on a local folder (no fault injection)

It prints the figures and exits 1 when anything was lost, duplicated or folded wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from faulty_proxy import FaultPlan, FaultyProxy  # noqa: E402
from tavus_callbacks.cli.send import CONVERSATION_ORDER, Ids, SampleConversation  # noqa: E402
from tavus_callbacks.events.normalize import Event  # noqa: E402
from tavus_callbacks.pipeline import Pipeline  # noqa: E402
from tavus_callbacks.record import Record, event_id  # noqa: E402
from tavus_callbacks.settings import Settings  # noqa: E402
from tavus_callbacks.state.fold import encode_state, entry_for, fold  # noqa: E402
from tavus_callbacks.state.repair import repair, walk  # noqa: E402
from tavus_callbacks.stores import Store, open_store  # noqa: E402

TOKEN = "soak-token-0123456789abcdefghij"
CHECK_FACTS = ("checked", "found", "size", "etag", "content_type", "note")  # depend on the bucket at apply time
# Besides the usual order, some conversations also get one of these, as real ones do now and then.
EXTRAS = ("recording_copy_failed", "perception_unavailable", "recording_ready_legacy", "shutdown_internal_error",
          "replica_training_error", "video_error")


# -- what is sent ---------------------------------------------------------------------------------

@dataclass
class Delivery:
    """One callback to deliver (a repeat is a second Delivery of the same body)."""

    body: bytes
    event_id: str
    conversation_id: str | None
    repeat: bool = False


def workload(events: int, bucket: str, seed: int) -> tuple[list[Delivery], list[str]]:
    """Shuffled deliveries of whole conversations (plus repeats), and the recording keys to pre-create."""
    rng = random.Random(seed)
    deliveries: list[Delivery] = []
    recordings: list[str] = []
    start = dt.datetime(2025, 7, 11, 6, 0, tzinfo=dt.UTC)
    n = 0
    while len(deliveries) < events:
        cid = f"csoak{seed:04d}{n:06d}"
        ids = Ids(conversation_id=cid, replica_id=f"rsoak{seed:04d}{n:06d}", face_id=f"f{n:011d}",
                  video_id=f"vsoak{seed:04d}{n:06d}")
        sample = SampleConversation(ids, start=start + dt.timedelta(seconds=37 * n))
        names = [*CONVERSATION_ORDER, *rng.sample(EXTRAS, rng.randint(0, 2))]
        for name in names:
            payload = sample.named(name)
            if name == "recording_ready" and rng.random() < 0.5:  # a recording in this very bucket: it is checked
                key = payload["properties"]["storage_uri"].split("/", 3)[3]
                payload["properties"]["storage_uri"] = f"s3://{bucket}/{key}"
                if rng.random() < 0.7:
                    recordings.append(key)
            about = payload.get("conversation_id")
            deliveries.append(Delivery(json.dumps(payload).encode(), event_id(payload), about))
        n += 1
    deliveries = deliveries[:events]
    repeats = [Delivery(d.body, d.event_id, d.conversation_id, repeat=True) for d in deliveries if rng.random() < 0.2]
    everything = deliveries + repeats
    rng.shuffle(everything)
    return everything, recordings


# -- the sender -----------------------------------------------------------------------------------

@dataclass
class Tally:
    """What the senders saw."""

    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)
    deliveries: int = 0
    requests: int = 0
    retried: int = 0
    gave_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def deliver(url: str, queue: Iterator[Delivery], tally: Tally, deadline: float, max_attempts: int, seed: int) -> None:
    """Take deliveries until the queue is empty or the deadline; retry each until a 2xx, with backoff."""
    rng = random.Random(seed)
    with requests.Session() as session:
        while time.monotonic() < deadline:
            with tally.lock:
                item = next(queue, None)
                if item is None:
                    return
                tally.sent.add(item.event_id)
                tally.deliveries += 1
            for attempt in range(max_attempts):
                try:
                    response = session.post(url, data=item.body, timeout=60,
                                            headers={"Content-Type": "application/json"})
                    outcome = str(response.status_code)
                    answer = response.json() if response.status_code == 200 else {}
                except (requests.RequestException, ValueError) as exc:
                    outcome, answer = type(exc).__name__, {}
                with tally.lock:
                    tally.requests += 1
                    tally.answers[outcome if outcome != "200" else f"200 {answer.get('status')}"] += 1
                    if outcome == "200":
                        if answer.get("event_id") != item.event_id:
                            tally.answers["200 with a wrong event_id"] += 1
                        tally.acknowledged.add(item.event_id)
                        break
                    tally.retried += 1
                time.sleep(min(2.0, 0.05 * 2 ** attempt) * rng.uniform(0.5, 1.5))  # as a webhook sender backs off
            else:
                with tally.lock:
                    tally.gave_up += 1


# -- the audit ------------------------------------------------------------------------------------

@dataclass
class Audit:
    """What the bucket holds, compared with what was sent."""

    stored_events: int = 0
    lost: int = 0
    duplicated: int = 0
    unacknowledged_lost: int = 0
    corrupt: int = 0
    conversations: int = 0
    fold_mismatches: int = 0
    derived_mismatches: int = 0
    pending: int = 0  # `pending/` markers (no version writes them any more: none)
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(problem)


def stored_event(key: str, raw: bytes) -> Record:
    """The Record a stored CloudEvent document stands for, rebuilt from the document alone."""
    document = orjson.loads(raw)
    data = {k: v for k, v in document["data"].items() if k != "payload"}
    return Record(id=document["id"], key=key, event=Event.model_validate(data), document=document, body=raw)


def audit(store: Store, prefix: str, sent: set[str], acknowledged: set[str]) -> Audit:
    """Check the store against what was sent: exactly once, intact, and every conversation.json an exact fold."""
    result = Audit()
    by_id: dict[str, list[str]] = {}
    by_conversation: dict[str, list[Record]] = {}
    states: dict[str, str] = {}
    for key in store.iter_keys(prefix):
        rest = key[len(prefix):]
        if rest.endswith("/conversation.json") and rest.count("/") == 1:
            states[rest.split("/", 1)[0]] = key
            continue
        if "/pending/" in rest:
            result.pending += 1
            result.note(f"pending: {key}")
            continue
        if "/events/" not in rest or not rest.endswith(".json"):
            continue
        blob = store.read(key)
        assert blob is not None, key
        record = stored_event(key, blob.data)
        by_id.setdefault(record.id, []).append(key)
        if record.id != event_id(record.document["data"]["payload"]) or not key.endswith(f"_{record.id}.json"):
            result.corrupt += 1
            result.note(f"corrupt: {key}")
        cid = record.event.conversation_id
        if cid and record.event.family in ("conversation", "guardrail", "objective"):
            by_conversation.setdefault(cid, []).append(record)
    result.stored_events = len(by_id)
    result.duplicated = sum(len(keys) - 1 for keys in by_id.values())
    for keys in by_id.values():
        if len(keys) > 1:
            result.note(f"stored {len(keys)} times: {keys}")
    result.lost = len(acknowledged - by_id.keys())
    result.unacknowledged_lost = len((sent - acknowledged) - by_id.keys())
    for eid in sorted(sent - by_id.keys())[:5]:
        result.note(f"sent but not stored: {eid}")
    for cid, records in sorted(by_conversation.items()):
        result.conversations += 1
        blob = store.read(states.get(cid, f"{prefix}{cid}/conversation.json"))
        if blob is None:
            result.fold_mismatches += 1
            result.note(f"{cid}: no conversation.json")
            continue
        state = orjson.loads(blob.data)
        expected = offline_fold(cid, records, state)
        if state != expected:
            result.fold_mismatches += 1
            result.note(f"{cid}: conversation.json differs from the offline fold: {_diff(state, expected)}")
        result.derived_mismatches += check_derived(store, prefix, cid, state, result)
    return result


def offline_fold(cid: str, records: list[Record], state: dict[str, Any]) -> dict[str, Any]:
    """fold() over entry_for() of the stored events, with the recording checks the state recorded."""
    recorded = {e["id"]: e.get("facts", {}) for e in state.get("events", [])}
    entries = []
    for record in records:
        facts = recorded.get(record.id, {})
        check = {k: facts[k] for k in CHECK_FACTS if k in facts} or None
        entries.append(entry_for(record, check, store_provider="s3"))
    expected: dict[str, Any] = orjson.loads(encode_state(fold(cid, entries)))
    return expected


def check_derived(store: Store, prefix: str, cid: str, state: dict[str, Any], result: Audit) -> int:
    """transcript.json and perception.json come from the event the state names."""
    mismatches = 0
    for name, part in (("transcript.json", state.get("transcript")), ("perception.json", state.get("perception"))):
        if not part or part.get("status", "ready") != "ready":
            continue
        blob = store.read(f"{prefix}{cid}/{name}")
        if blob is None or orjson.loads(blob.data).get("event_id") != part["event_id"]:
            mismatches += 1
            result.note(f"{cid}/{name} is not from event {part['event_id']}")
    return mismatches


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {str(a.get(k))[:120]} != {str(b.get(k))[:120]}" for k in keys[:3])


# -- the run --------------------------------------------------------------------------------------

@dataclass
class Report:
    backend: str
    events: int
    conversations: int
    deliveries: int
    requests: int
    retried: int
    gave_up: int
    acknowledged: int
    answers: dict[str, int]
    fault_rate: float
    faults_injected: int
    faults_by_kind: dict[str, int]
    store_requests: int
    seconds: float
    audit: dict[str, Any]
    repaired: dict[str, Any]

    @property
    def ok(self) -> bool:
        a = self.audit
        return (a["lost"] == 0 and a["duplicated"] == 0 and a["unacknowledged_lost"] == 0 and a["corrupt"] == 0
                and a["fold_mismatches"] == 0 and a["derived_mismatches"] == 0 and a["pending"] == 0
                and self.gave_up == 0
                and self.answers.get("200 with a wrong event_id", 0) == 0)


@contextlib.contextmanager
def s3_backend(rate: float, seed: int) -> Iterator[tuple[str, dict[str, str], Store, FaultPlan | None, list[str]]]:
    """moto server, a bucket, and the fault-injecting proxy in front; serve's env points at the proxy."""
    from support.servers import create_bucket, emulator_env, moto_emulator, new_bucket_name
    from tavus_callbacks.clients import clear_clients

    moto = moto_emulator().start()
    proxy: FaultyProxy | None = None
    try:
        bucket = new_bucket_name()
        create_bucket(moto, bucket)
        plan = FaultPlan(rate, seed=seed)
        plan.enabled = False  # until serve is up: its start-up check goes through the proxy too
        proxy = FaultyProxy(moto.endpoint, plan).start()
        direct = emulator_env(moto)
        os.environ.update(direct)  # this process reads the bucket directly, never through the proxy
        clear_clients()
        store, _ = open_store(f"s3://{bucket}/")
        yield f"s3://{bucket}/", {**direct, "AWS_ENDPOINT_URL": proxy.url}, store, plan, [bucket]
    finally:
        if proxy is not None:
            proxy.stop()
        moto.close()


@contextlib.contextmanager
def sqlite_backend() -> Iterator[tuple[str, dict[str, str], Store, FaultPlan | None, list[str]]]:
    with tempfile.TemporaryDirectory(prefix="tavus-soak-") as folder:
        url = f"sqlite:///{Path(folder) / 'store.db'}"
        store, _ = open_store(url)
        yield url, {}, store, None, ["local-sqlite"]


def soak(backend: str = "s3", events: int = 300, rate: float = 0.1, senders: int = 16, minutes: float = 30.0,
         seed: int = 1, max_attempts: int = 30, workers: int = 2) -> Report:
    """Run one soak and audit it."""
    from support.serve_fixture import running_serve

    started = time.monotonic()
    context = s3_backend(rate, seed) if backend == "s3" else sqlite_backend()
    with context as (store_url, env, store, plan, names):
        work, recordings = workload(events, names[0], seed)
        for key in recordings:  # the vendor's recordings, already in the bucket
            store.create(key, b"\x00\x00\x00\x18ftypmp42" + bytes(1000), content_type="video/mp4")
        with running_serve(store_url=store_url, env=env, tokens=(TOKEN,), workers=workers, threads=8,
                           args=["--log-level", "warning"]) as server:
            if plan is not None:
                plan.enabled = True
            tally = Tally()
            queue = iter(work)
            deadline = time.monotonic() + minutes * 60
            threads = [threading.Thread(target=deliver, args=(server.callback_url(TOKEN), queue, tally, deadline,
                                                              max_attempts, seed * 1000 + i)) for i in range(senders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if plan is not None:
                plan.enabled = False
            server.settle(store_url, timeout=120)  # serve's feed retries what the faults failed
            if not server.alive():
                raise RuntimeError(f"serve died during the soak:\n{server.output()[-3000:]}")
        # What the feed had not finished when serve stopped (it should be nothing) is folded here, once.
        pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=store, prefix="")
        repaired = repair(pipeline, *walk(store, pipeline.layout))
        result = audit(store, "", tally.sent, tally.acknowledged)
    conversations = len({d.conversation_id for d in work if d.conversation_id and d.event_id in tally.sent})
    return Report(
        backend=backend, events=len(tally.sent), conversations=conversations, deliveries=tally.deliveries,
        requests=tally.requests, retried=tally.retried, gave_up=tally.gave_up, acknowledged=len(tally.acknowledged),
        answers=dict(sorted(tally.answers.items())), fault_rate=rate if plan else 0.0,
        faults_injected=plan.total if plan else 0, faults_by_kind=dict(sorted(plan.injected.items())) if plan else {},
        store_requests=plan.requests if plan else 0, seconds=round(time.monotonic() - started, 1),
        audit=asdict(result), repaired=asdict(repaired),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["s3", "sqlite"], default="s3")
    parser.add_argument("--events", type=int, default=2000, help="distinct events to send (repeats come on top)")
    parser.add_argument("--minutes", type=float, default=30.0, help="stop starting new deliveries after this")
    parser.add_argument("--rate", type=float, default=0.1, help="share of store requests given a fault")
    parser.add_argument("--senders", type=int, default=16, help="concurrent sender threads")
    parser.add_argument("--workers", type=int, default=2, help="serve's worker processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the report as one JSON line")
    args = parser.parse_args(argv)
    report = soak(args.backend, args.events, args.rate, args.senders, args.minutes, args.seed, workers=args.workers)
    a = report.audit
    print(f"soak on {report.backend}: {report.events} events of {report.conversations} conversations, "
          f"{report.deliveries - report.events} repeats, {report.seconds} s, {args.senders} senders")
    print(f"  deliveries {report.deliveries}, requests {report.requests}, acknowledged {report.acknowledged}, "
          f"retried {report.retried}, gave up {report.gave_up}")
    print(f"  answers {report.answers}")
    print(f"  store requests {report.store_requests}, fault rate {report.fault_rate}, faults injected "
          f"{report.faults_injected} {report.faults_by_kind}")
    print(f"  stored {a['stored_events']} events; lost {a['lost']}, duplicated {a['duplicated']}, "
          f"sent-unacknowledged lost {a['unacknowledged_lost']}, corrupt {a['corrupt']}")
    print(f"  repaired after the run: {report.repaired}")
    print(f"  conversations audited {a['conversations']}: fold mismatches {a['fold_mismatches']}, "
          f"derived mismatches {a['derived_mismatches']}, pending markers left {a['pending']}")
    for problem in a["problems"]:
        print(f"  ! {problem}")
    print("  verdict:", "OK" if report.ok else "FAILED")
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
