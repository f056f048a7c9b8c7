"""`reconcile` against the fake vendor API (tests/support/fake_tavus.py): missed callbacks come back exactly once,
complete conversations cost no fetch, the client is polite, and a run resumes where the last one stopped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import drain, handle_and_derive
from support.bus_servers import SDK_WARNINGS, EventGridSink, forwarding_pipeline
from support.bus_servers import deliver as bus_deliver
from support.fake_tavus import API_KEY, FakeTavus, conversation_callbacks
from support.servers import sqlite_url
from tavus_callbacks.cli import main
from tavus_callbacks.clients import clear_clients
from tavus_callbacks.forward.eventgrid import KEY_VARIABLE
from tavus_callbacks.http import Request
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.reconcile.client import DeadlineReached, TavusAPIError, TavusClient
from tavus_callbacks.reconcile.scheduled import parse_since
from tavus_callbacks.reconcile.sweep import Sweep
from tavus_callbacks.settings import Settings

TOKEN = "reconcile-token-0123456789abcdef"
UNKNOWN_TYPES = ("system.participant_joined", "application.memory_consolidation",
                 "application.raven_memory_evidence")


def recent(minutes_ago: float = 30) -> datetime:
    """A start time inside the default 72 h window, with milliseconds (epoch floats must still match)."""
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).replace(microsecond=472000)


def deliver(pipeline: Pipeline, payload: dict[str, Any]) -> dict[str, Any]:
    response = handle_and_derive(pipeline, Request("POST", "/", {"token": TOKEN}, {}, orjson.dumps(payload)))
    assert response.status == 200, response.body
    answer: dict[str, Any] = orjson.loads(response.body)
    return answer


def event_documents(pipeline: Pipeline, cid: str) -> list[dict[str, Any]]:
    store = pipeline.store
    return [orjson.loads(blob.data) for key in store.iter_keys(f"{pipeline.layout.prefix}{cid}/events/")
            if (blob := store.read(key)) is not None]


def state(pipeline: Pipeline, cid: str) -> dict[str, Any]:
    blob = pipeline.store.read(pipeline.layout.conversation_key(cid))
    assert blob is not None, f"no state for {cid}"
    document: dict[str, Any] = orjson.loads(blob.data)
    return document


def client(fake: FakeTavus, **options: Any) -> TavusClient:
    return TavusClient(API_KEY, fake.url, max_per_minute=0, **options)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Pipeline]:
    """The embedded store: a SQLite file."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=sqlite_url(tmp_path / "tavus.db")))
    yield pipeline
    pipeline.close()


@pytest.fixture(params=["sqlite", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pipeline]:
    """The embedded store (a SQLite file), and S3 on the shared moto server."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "tavus.db")
    else:
        url = request.getfixturevalue("cloud_bucket")("s3", "tavus/")
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=url))
    yield pipeline
    pipeline.close()
    clear_clients()


def test_the_cli_recovers_every_missed_event_across_pages_once(fake_tavus: FakeTavus, local: Pipeline,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    missed: dict[str, list[dict[str, Any]]] = {}
    for n in range(5):
        cid = f"c{n:04d}recon"
        callbacks = conversation_callbacks(cid, recent(60 + n))
        fake_tavus.add(cid, callbacks)
        missed[cid] = callbacks[n % 5::2]  # a different part lost in each conversation
        for callback in callbacks:
            if callback not in missed[cid]:
                deliver(local, callback)
    url = local.store.url
    assert main(["reconcile", "--store", url, "--page-size", "2"]) == 0
    out = capsys.readouterr().out
    lost = sum(map(len, missed.values()))
    assert f"5 conversations checked, 0 already complete, 5 fetched, {lost} events recovered, 0 failures" in out
    assert fake_tavus.count("/v2/conversations?") == 3 and fake_tavus.count("verbose=true") == 5
    for cid, callbacks in missed.items():
        documents = event_documents(local, cid)
        assert len(documents) == 5, "one object per event, callback or recovered"
        recovered = [d for d in documents if d.get("tavusorigin") == "api"]
        verbose = fake_tavus.conversations[cid]
        assert sorted(d["id"] for d in recovered) == sorted(deliver(local, c)["event_id"] for c in callbacks)
        for document in recovered:
            assert document["data"]["payload"] in verbose["events"], "the API's item, verbatim"
            assert document["data"]["valid"] is True and document["data"]["conversation_id"] == cid
        conversation = state(local, cid)
        assert len(conversation["events"]) == 5 and conversation["status"] == "ended"
        assert conversation["transcript"]["messages"] == 4 and conversation["reconciled"]["status"] == "ended"
    # The store is complete now: a second run lists and fetches nothing more.
    before = len(fake_tavus.requests)
    assert main(["reconcile", "--store", url, "--page-size", "2"]) == 0
    assert "5 already complete, 0 fetched, 0 events recovered" in capsys.readouterr().out
    assert fake_tavus.count("verbose=true") == 5 and len(fake_tavus.requests) == before + 3


def test_a_fully_received_conversation_costs_no_fetch(fake_tavus: FakeTavus, local: Pipeline) -> None:
    whole, partial = conversation_callbacks("cwhole", recent()), conversation_callbacks("cpartial", recent())
    fake_tavus.add("cwhole", whole)
    fake_tavus.add("cpartial", partial)
    for callback in [*whole, *partial[1:]]:
        deliver(local, callback)
    summary = Sweep(local, client(fake_tavus), since=parse_since("72h")).run()
    assert (summary.complete, summary.fetched, summary.recovered, summary.failures) == (1, 1, 1, [])
    assert fake_tavus.count("/v2/conversations/cwhole") == 0
    assert fake_tavus.count("/v2/conversations/cpartial?verbose=true") == 1


def test_an_active_conversation_is_fetched_until_it_changes_no_more(fake_tavus: FakeTavus, local: Pipeline) -> None:
    callbacks = conversation_callbacks("cactive", recent())[:1]
    fake_tavus.add("cactive", callbacks, status="active")
    first = Sweep(local, client(fake_tavus)).run()
    second = Sweep(local, client(fake_tavus)).run()
    assert (first.fetched, first.recovered, second.complete, second.fetched) == (1, 1, 1, 0)
    fake_tavus.add("cactive", conversation_callbacks("cactive", recent())[:2], status="ended")  # it moved on
    third = Sweep(local, client(fake_tavus)).run()
    assert (third.fetched, third.recovered) == (1, 1) and state(local, "cactive")["status"] == "ended"


def test_a_conversation_the_store_never_heard_of_gets_its_state_and_the_top_level_shutdown_reason(
        fake_tavus: FakeTavus, local: Pipeline) -> None:
    callbacks = conversation_callbacks("cunheard", recent())
    for callback in callbacks:
        if callback["event_type"] == "system.shutdown":
            del callback["properties"]["shutdown_reason"]
    fake_tavus.add("cunheard", callbacks, shutdown_reason="internal error occurred at step 7")
    summary = Sweep(local, client(fake_tavus)).run("cunheard")
    assert (summary.new_conversations, summary.recovered, summary.failures) == (1, 5, [])
    conversation = state(local, "cunheard")
    assert conversation["shutdown"]["code"] == "internal_error" and conversation["shutdown"]["step"] == "7"
    assert conversation["recording"]["status"] == "ready" and conversation["perception"]["status"] == "ready"
    shutdown = next(d for d in event_documents(local, "cunheard") if d["type"].endswith("shutdown"))
    assert "shutdown_reason" not in shutdown["data"]["payload"]["properties"], "the item stays verbatim"


def test_a_conversation_with_no_events_at_all_gets_its_state(fake_tavus: FakeTavus, local: Pipeline) -> None:
    fake_tavus.add("cempty", [], status="active")
    summary = Sweep(local, client(fake_tavus)).run()
    assert (summary.fetched, summary.recovered, summary.failures) == (1, 0, [])
    assert state(local, "cempty")["events"] == [] and state(local, "cempty")["reconciled"]["status"] == "active"


def test_unknown_event_types_come_through_both_paths_as_valid_events(fake_tavus: FakeTavus, local: Pipeline) -> None:
    callbacks = conversation_callbacks("cunknown", recent(), extra=UNKNOWN_TYPES)
    fake_tavus.add("cunknown", callbacks)
    by_callback = [c for c in callbacks if c["event_type"] in UNKNOWN_TYPES[:2]]
    for callback in by_callback:
        assert deliver(local, callback)["valid"] is True
    summary = Sweep(local, client(fake_tavus)).run()
    assert summary.recovered == len(callbacks) - 2 and summary.failures == []
    documents = {d["type"]: d for d in event_documents(local, "cunknown")}
    for unknown in UNKNOWN_TYPES:
        document = documents[f"io.tavus.conversation.{unknown}"]
        assert document["data"]["valid"] is True and document["data"]["errors"] == []
        assert ("tavusorigin" in document) is (unknown == UNKNOWN_TYPES[2])


@pytest.mark.parametrize("first", ["callback", "api"])
def test_a_callback_and_its_api_copy_are_one_event_in_either_order(fake_tavus: FakeTavus, any_store: Pipeline,
                                                                   first: str) -> None:
    callbacks = conversation_callbacks("corder", recent())
    fake_tavus.add("corder", callbacks)
    if first == "callback":
        answers = [deliver(any_store, c) for c in callbacks]
        Sweep(any_store, client(fake_tavus), thorough=True).run()
    else:
        summary = Sweep(any_store, client(fake_tavus)).run()
        assert summary.recovered == 5
        answers = [deliver(any_store, c) for c in callbacks]
        assert {a["status"] for a in answers} == {"duplicate"}
    documents = event_documents(any_store, "corder")
    assert len(documents) == 5 and {d["id"] for d in documents} == {a["event_id"] for a in answers}
    assert sorted(e["id"] for e in state(any_store, "corder")["events"]) == sorted(a["event_id"] for a in answers)


def test_a_callback_and_its_api_copy_racing_are_one_event(fake_tavus: FakeTavus, any_store: Pipeline) -> None:
    callbacks = conversation_callbacks("crace", recent())
    fake_tavus.add("crace", callbacks)
    items = fake_tavus.conversations["crace"]["events"]
    barrier = threading.Barrier(2 * len(callbacks))
    results: list[Any] = []

    def run(action: Callable[[], Any]) -> None:
        barrier.wait()
        results.append(action())

    threads = [threading.Thread(target=run, args=(lambda c=c: deliver(any_store, c)["status"],)) for c in callbacks]
    threads += [threading.Thread(target=run, args=(lambda i=i: any_store.ingest(
        i, fields={**i, "conversation_id": "crace"})[1],)) for i in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key in any_store.folder.event_keys("crace"):  # as the store's change feed does next
        any_store.derive(key)
    stored = results.count("stored") + results.count(True)
    assert stored == len(callbacks), results
    documents = event_documents(any_store, "crace")
    assert len(documents) == len(callbacks) and len(state(any_store, "crace")["events"]) == len(callbacks)


@SDK_WARNINGS
def test_a_recovered_event_whose_publish_fails_is_derived_again_by_the_feed_and_published_once(
        fake_tavus: FakeTavus, eventgrid_sink: EventGridSink, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "eventgrid-test-key-0123456789")
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "tavus.db"), eventgrid_sink.url())
    callbacks = conversation_callbacks("cbus", recent())
    fake_tavus.add("cbus", callbacks)
    for callback in callbacks[1:]:  # the first one never arrived
        assert bus_deliver(pipeline, callback).status == 200
    drain(pipeline)
    eventgrid_sink.status = 503  # the bus is down while the sweep recovers the missed event
    eventgrid_sink.requests.clear()
    first = Sweep(pipeline, client(fake_tavus)).run()
    assert first.recovered == 1 and len(first.failures) == 1 and "not derived" in first.failures[0]
    (recovered,) = [d for d in event_documents(pipeline, "cbus") if d.get("tavusorigin") == "api"]
    assert recovered["id"] in {e["id"] for e in state(pipeline, "cbus")["events"]}, "folded all the same"
    assert list(pipeline.store.iter_keys("cbus/pending/")) == [], "no marker: the feed holds it"
    eventgrid_sink.status = 200
    eventgrid_sink.requests.clear()
    drain(pipeline)  # the store's change feed delivers it again
    assert recovered["id"] in [orjson.loads(r.body)[0]["id"] for r in eventgrid_sink.requests]
    second = Sweep(pipeline, client(fake_tavus)).run()
    assert (second.complete, second.fetched, second.failures) == (1, 0, [])
    drain(pipeline)
    assert [orjson.loads(r.body)[0]["id"] for r in eventgrid_sink.requests].count(recovered["id"]) == 1
    pipeline.close()


def test_a_dry_run_counts_what_is_missing_and_stores_nothing(fake_tavus: FakeTavus, local: Pipeline,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    callbacks = conversation_callbacks("cdry", recent())
    fake_tavus.add("cdry", callbacks)
    deliver(local, callbacks[0])
    assert main(["reconcile", "--store", local.store.url, "--dry-run"]) == 0
    assert "0 events recovered, 4 missing" in capsys.readouterr().out
    assert len(event_documents(local, "cdry")) == 1 and "reconciled" not in state(local, "cdry")
    assert local.store.read("reconcile/cursor.json") is None


def test_conversations_outside_the_window_are_left_alone(fake_tavus: FakeTavus, local: Pipeline) -> None:
    fake_tavus.add("cold", conversation_callbacks("cold", recent(60 * 24 * 10)))
    fake_tavus.add("cnew", conversation_callbacks("cnew", recent()))
    summary = Sweep(local, client(fake_tavus), since=parse_since("72h")).run()
    assert (summary.checked, summary.outside_window, summary.recovered) == (1, 1, 5)
    assert local.store.read(local.layout.conversation_key("cold")) is None


def test_429_waits_for_retry_after_and_500s_are_retried(fake_tavus: FakeTavus) -> None:
    waits: list[float] = []
    fake_tavus.add("cretry", conversation_callbacks("cretry", recent()))
    fake_tavus.fail("/v2/conversations?", status=429, retry_after="7")
    fake_tavus.fail("/v2/conversations/cretry", status=500, times=2)
    api = client(fake_tavus, sleep=waits.append, backoff=0.5)
    assert api.list_conversations(1, 10).total_count == 1
    assert api.conversation("cretry")["conversation_id"] == "cretry"
    # urllib3's backoff: the first retry at once, the next after 2 x 0.5 s plus up to 0.5 s of jitter
    assert waits[0] == 7.0 and len(waits) == 2 and 1.0 <= waits[1] <= 1.5, waits
    assert api.requests == 5


def test_a_slow_answer_times_out_and_is_tried_again(fake_tavus: FakeTavus) -> None:
    fake_tavus.add("cslow", conversation_callbacks("cslow", recent()))
    fake_tavus.fail("/v2/conversations/cslow", status=0, delay=2.0)
    api = client(fake_tavus, read_timeout=0.3, sleep=lambda s: None)
    assert api.conversation("cslow")["conversation_id"] == "cslow"
    assert fake_tavus.count("/v2/conversations/cslow") == 2


def test_the_request_cap_spaces_requests(fake_tavus: FakeTavus) -> None:
    waits: list[float] = []
    api = TavusClient(API_KEY, fake_tavus.url, max_per_minute=30, sleep=waits.append)
    for page in (1, 2, 3):
        api.list_conversations(page, 10)
    # 30 a minute: each request starts 2 s after the one before (the sleeps asked for, not time measured)
    assert len(waits) == 2 and 1.5 < waits[0] <= 2.0 and 1.5 < waits[1] - waits[0] <= 2.0, waits


def test_a_server_that_keeps_failing_is_a_failure_and_the_exit_status_says_so(
        fake_tavus: FakeTavus, local: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    fake_tavus.add("cdown", conversation_callbacks("cdown", recent()))
    fake_tavus.add("cup", conversation_callbacks("cup", recent()))
    fake_tavus.fail("/v2/conversations/cdown", status=503, times=100)
    api = client(fake_tavus, sleep=lambda s: None)
    summary = Sweep(local, api).run()
    assert summary.recovered == 5 and len(summary.failures) == 1 and "cdown" in summary.failures[0]
    assert state(local, "cup")["reconciled"]["status"] == "ended"
    assert local.store.read(local.layout.conversation_key("cdown")) is None


def test_the_key_is_never_in_a_message_or_a_log_line(fake_tavus: FakeTavus, local: Pipeline,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "wrong-secret-api-key-do-not-log-9876"
    monkeypatch.setenv("TAVUS_API_KEY", wrong)
    fake_tavus.fail("/v2/conversations?", status=500, times=1)
    with caplog.at_level(logging.DEBUG):
        code = main(["reconcile", "--store", local.store.url])
    out, err = capsys.readouterr()
    assert code == 1 and "the API key was refused; check TAVUS_API_KEY" in err
    assert wrong in fake_tavus.keys_seen, "the key was sent, in its header"
    assert wrong not in out + err + caplog.text


def test_a_missing_key_is_a_clear_error(local: Pipeline, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TAVUS_API_KEY", raising=False)
    assert main(["reconcile", "--store", local.store.url]) == 2
    assert "TAVUS_API_KEY is not set" in capsys.readouterr().err


def test_a_run_stopped_by_its_budget_resumes_at_the_page_it_stopped_on(fake_tavus: FakeTavus,
                                                                       local: Pipeline) -> None:
    for n in range(6):
        fake_tavus.add(f"cpage{n}", conversation_callbacks(f"cpage{n}", recent(n)))
    fake_tavus.fail("page=2", status=429, retry_after="3600")
    first = Sweep(local, client(fake_tavus), page_size=2, deadline=time.monotonic() + 60).run()
    assert (first.finished, first.fetched, first.failures) == (False, 2, [])
    cursor = orjson.loads(local.store.read("reconcile/cursor.json").data)  # type: ignore[union-attr]
    assert cursor["page"] == 2 and cursor["finished"] is False
    fake_tavus.requests.clear()
    second = Sweep(local, client(fake_tavus), page_size=2).run()
    assert second.finished and second.fetched == 4 and second.failures == []
    assert fake_tavus.requests[0].startswith("/v2/conversations?limit=2&page=2")
    assert orjson.loads(local.store.read("reconcile/cursor.json").data)["finished"] is True  # type: ignore[union-attr]
    assert all(len(state(local, f"cpage{n}")["events"]) == 5 for n in range(6))


def test_a_deadline_already_past_sends_nothing(fake_tavus: FakeTavus) -> None:
    with pytest.raises(DeadlineReached):
        client(fake_tavus).list_conversations(1, 10, deadline=time.monotonic() - 1)
    assert fake_tavus.requests == []


def test_a_refusal_is_not_retried(fake_tavus: FakeTavus) -> None:
    api = client(fake_tavus)
    with pytest.raises(TavusAPIError, match="404"):
        api.conversation("cmissing")
    assert api.requests == 1


def test_since_takes_durations_and_times() -> None:
    now = datetime(2025, 7, 11, 12, tzinfo=UTC)
    assert parse_since("72h", now) == now - timedelta(hours=72)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2025-07-10", now) == datetime(2025, 7, 10, tzinfo=UTC)
    with pytest.raises(Exception, match="neither a duration"):
        parse_since("yesterday", now)



# -- the budget is a wall-clock bound, and the summary says why a run stopped ------------------------------

@pytest.mark.parametrize("server", ["dripping", "stalled"])
def test_a_server_that_drips_or_stalls_ends_the_run_at_its_budget(fake_tavus: FakeTavus, local: Pipeline,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  server: str) -> None:
    # One byte every 0.2 s keeps every single read within its timeout; only a deadline on the whole answer ends it.
    fake_tavus.add("cdrip", conversation_callbacks("cdrip", recent()))
    if server == "dripping":
        fake_tavus.fail("/v2/conversations?", status=0, drip=0.2, times=100)
    else:
        fake_tavus.fail("/v2/conversations?", status=0, delay=3600, times=100)
    code = main(["reconcile", "--store", local.store.url, "--budget", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "0 failures" in out, out
    assert "stopped: the time budget ran out while GET /v2/conversations was unanswered; the next run resumes" in out


def test_a_dripping_answer_without_a_budget_ends_at_the_request_deadline(fake_tavus: FakeTavus) -> None:
    fake_tavus.fail("/v2/conversations/cdrip", status=0, drip=0.2)
    with pytest.raises(TavusAPIError, match="not answered within 1 s"):
        client(fake_tavus, request_seconds=1).conversation("cdrip")


@pytest.mark.parametrize("fault", ["500", "429-nan"])
def test_an_api_that_only_fails_is_a_failure_within_the_budget(fake_tavus: FakeTavus, local: Pipeline,
                                                               capsys: pytest.CaptureFixture[str], fault: str) -> None:
    status, retry_after = (500, None) if fault == "500" else (429, "nan")
    fake_tavus.fail("/v2/conversations", status=status, retry_after=retry_after, times=1000)
    code = main(["reconcile", "--store", local.store.url, "--budget", "3"])
    out, err = capsys.readouterr()
    assert code == 1 and "1 failures" in out and "stopped early by the failure above" in out, out
    assert f"failed: GET /v2/conversations: {status} (" in err and "time budget" not in out + err


def test_a_retry_after_beyond_the_budget_is_not_waited_for_and_says_so(fake_tavus: FakeTavus, local: Pipeline,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake_tavus.fail("/v2/conversations", status=429, retry_after="1000000000", times=10)
    code = main(["reconcile", "--store", local.store.url, "--budget", "30"])
    out = capsys.readouterr().out
    assert code == 0 and "0 failures" in out, out
    assert "answered 429 asking to wait 1000000000 s" in out and "the next run resumes" in out
    assert fake_tavus.count("/v2/conversations") == 1


def test_an_answer_that_is_not_json_stops_the_run_as_a_failure(fake_tavus: FakeTavus, local: Pipeline,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake_tavus.fail("/v2/conversations?", status=200, body=b"<html>maintenance</html>")
    code = main(["reconcile", "--store", local.store.url])
    out, err = capsys.readouterr()
    assert code == 1 and "stopped early by the failure above" in out, out
    assert "failed: GET /v2/conversations answered 200 with a body that is not JSON" in err


def test_a_key_refused_mid_run_stops_the_run_once(fake_tavus: FakeTavus, local: Pipeline) -> None:
    for cid in ("crefused1", "crefused2", "crefused3"):
        fake_tavus.add(cid, conversation_callbacks(cid, recent()))
    fake_tavus.fail("/v2/conversations/", status=401, times=100)
    summary = Sweep(local, client(fake_tavus)).run()
    assert len(summary.failures) == 1 and "the API key was refused" in summary.failures[0]
    assert not summary.finished and "stopped: " in summary.line() and fake_tavus.count("verbose=true") == 1


@pytest.mark.parametrize("damaged", [{"events": 5}, {"events": None, "reconciled": 7},
                                     {"events": "x", "reconciled": {"updated_at": []}}])
def test_a_damaged_state_is_not_complete_and_the_sweep_goes_on(fake_tavus: FakeTavus, local: Pipeline,
                                                              capsys: pytest.CaptureFixture[str],
                                                              damaged: dict[str, Any]) -> None:
    callbacks = conversation_callbacks("cdamaged", recent())
    fake_tavus.add("cdamaged", callbacks)
    fake_tavus.add("cfine", conversation_callbacks("cfine", recent()))
    key = local.layout.conversation_key("cdamaged")
    local.store.replace(key, orjson.dumps(damaged), None)
    assert main(["reconcile", "--store", local.store.url]) == 0
    out = capsys.readouterr().out
    assert "2 conversations checked, 0 already complete, 2 fetched" in out and "0 failures" in out, out
    assert len(state(local, "cfine")["events"]) == 5
    assert len(event_documents(local, "cdamaged")) == 5
