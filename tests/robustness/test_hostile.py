"""Hostile input: nothing a sender does crashes the endpoint, escapes the store's prefix or leaks the token.

Each case ends in a clear 4xx or a safely stored (invalid) event. The pipeline cases run in-process
on a real SQLite store with a key prefix; the HTTP cases (lying Content-Length, stalled clients,
tokens in odd places) run against a real `tavus-callbacks serve` subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import handle_and_derive, load_event
from support.serve_fixture import TOKENS, ServeProcess, running_serve
from tavus_callbacks import auth
from tavus_callbacks.http import Request, Response
from tavus_callbacks.pipeline import MAX_JSON_DEPTH, Pipeline
from tavus_callbacks.record import event_id
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores import Store
from tavus_callbacks.stores.sqlite import SQLiteStore

TOKEN = "hostile-token-0123456789abcdef"
ROTATED = "hostile-rotated-abcdefghijklmnop"
PREFIX = "tenant-a/"
MAX_BODY = 64 * 1024  # serve's limit here
PIPELINE_MAX_BODY = 1024 * 1024  # the in-process pipeline's: room for the deep-nesting bodies
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# Ids that try to leave their folder, or to look like another id.
HOSTILE_IDS = {
    "dotdot": "../x",
    "dotdot-deep": "../../../../etc/passwd",
    "dotdot-alone": "..",
    "dot": ".",
    "absolute": "/etc/passwd",
    "percent-encoded": "%2e%2e%2fx",
    "percent-dots": "%2e%2e",
    "backslash": "..\\..\\windows",
    "nul": "c123\x00../x",
    "newline": "c123\n../x",
    "slash-inside": "c123/../c999",
    "long": "c" * 129,
    "very-long": "c" * 20_000,
    "fullwidth": "\uff43\uff11\uff12\uff13",
    "division-slash": "c1\u2215..\u2215x",
    "fullwidth-solidus": "c1\uff0fx",
    "one-dot-leader": "\u2024\u2024",
    "rtl-override": "c\u202e321",
    "zero-width": "c1\u200b23",
    "combining": "c\u03001",
    "space": "c 123",
    "leading-dash": "-c123",
    "empty": "",
}
# Where a payload carries an id that becomes part of a key.
ID_FIELDS = {
    "conversation": lambda v: {**load_event("conversation.system.replica_joined"), "conversation_id": v},
    "conversation-replica": lambda v: {**load_event("conversation.system.replica_joined"),
                                       "properties": {"replica_id": v}},
    "guardrail": lambda v: {**load_event("guardrail"), "conversation_id": v},
    "objective": lambda v: {**load_event("objective"), "conversation_id": v},
    "replica-training": lambda v: {**load_event("replica.training.ready"), "replica_id": v},
    "video": lambda v: {**load_event("video.ready"), "video_id": v},
    "video-status": lambda v: {**load_event("video.ready"), "status": v},
    "event-type": lambda v: {**load_event("conversation.system.replica_joined"), "event_type": f"system.{v}"},
}


@pytest.fixture
def store_root(tmp_path: Path) -> Store:
    return SQLiteStore(tmp_path / "store.db", timeout=0.5)


@pytest.fixture
def pipeline(store_root: Store) -> Pipeline:
    return Pipeline(Settings(tokens=(TOKEN, ROTATED), max_body_bytes=PIPELINE_MAX_BODY), store=store_root,
                    prefix=PREFIX)


def post(p: Pipeline, body: bytes, token: str = TOKEN) -> Response:
    """Answer, then derive from what was stored (derive writes beside the event: it must stay confined too)."""
    return handle_and_derive(p, Request("POST", "/", {"token": token}, {}, body))


def written(store: Store) -> list[str]:
    """Every object key in the store."""
    return list(store.iter_keys(""))


def read(store: Store, key: str) -> bytes:
    blob = store.read(key)
    assert blob is not None, key
    return blob.data


def assert_confined(tmp_path: Path, root: Store) -> list[str]:
    """Nothing beside the store's file; every key under the prefix and made of plain segments."""
    assert {p.name for p in tmp_path.iterdir()} <= {"store.db", "store.db-wal", "store.db-shm"}
    keys = written(root)
    for key in keys:
        assert key.startswith(PREFIX), key
        assert all(_SAFE_SEGMENT.fullmatch(s) and ".." not in s for s in key.split("/")), key
    return keys


def quarantined(root: Store, body: bytes) -> bool:
    digest = hashlib.sha256(body).hexdigest()
    return any(read(root, key) == body for key in written(root) if key.endswith(f"/{digest}.bin"))


# -- ids that try to leave the prefix -------------------------------------------------------------

@pytest.mark.parametrize("field", sorted(ID_FIELDS))
@pytest.mark.parametrize("name", sorted(HOSTILE_IDS))
def test_an_id_that_is_not_a_plain_identifier_never_becomes_part_of_a_key(
        pipeline: Pipeline, tmp_path: Path, store_root: Store, field: str, name: str) -> None:
    hostile = HOSTILE_IDS[name]
    payload = ID_FIELDS[field](hostile)
    response = post(pipeline, json.dumps(payload).encode())
    assert response.status == 200, response.body
    keys = assert_confined(tmp_path, store_root)
    for key in keys:
        if hostile and hostile not in ("c" * 129, "."):
            assert hostile not in key, key
        assert "c" * 129 not in key, key
    events = [k for k in keys if k.endswith(f"_{response.json_body()['event_id']}.json")]
    assert len(events) == 1
    document = orjson.loads(read(store_root, events[0]))
    assert document["data"]["payload"] == payload  # kept whole, never dropped
    if field not in ("video-status", "event-type"):
        assert document["data"]["valid"] is False and document["data"]["errors"]


def test_a_plain_id_does_name_its_folder(pipeline: Pipeline, tmp_path: Path, store_root: Store) -> None:
    """The control for the test above: a plain id is the folder, so the check there can fail."""
    post(pipeline, json.dumps(ID_FIELDS["conversation"]("c-plain_123")).encode())
    keys = assert_confined(tmp_path, store_root)
    assert any(k.startswith(f"{PREFIX}c-plain_123/events/") for k in keys)
    assert f"{PREFIX}c-plain_123/conversation.json" in keys


def test_a_request_path_or_query_with_traversal_changes_nothing(pipeline: Pipeline, tmp_path: Path,
                                                                 store_root: Store) -> None:
    body = json.dumps(load_event("objective")).encode()
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/x", "/..\\..\\x", "/\x00"):
        response = pipeline.handle(Request("POST", path, {"token": TOKEN, "prefix": "../", "key": "/etc"}, {}, body))
        assert response.status == 200
    assert len([k for k in assert_confined(tmp_path, store_root) if "/events/" in k]) == 1


# -- JSON that parsers choke on --------------------------------------------------------------------

def nested(depth: int, open_: bytes = b"[", close: bytes = b"]", core: bytes = b"") -> bytes:
    return open_ * depth + core + close * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH])
def test_nesting_up_to_the_limit_is_stored_and_every_object_reads_back(
        pipeline: Pipeline, tmp_path: Path, store_root: Store, depth: int) -> None:
    # The objective's variables are copied into conversation.json three levels deeper than in the body.
    body = b'{"conversation_id":"c1","objective_name":"o","output_variables":{"v":' + nested(depth - 2) + b"}}"
    response = post(pipeline, body)
    assert response.status == 200, response.body
    for key in assert_confined(tmp_path, store_root):
        orjson.loads(read(store_root, key))


@pytest.mark.parametrize("body", [
    b'{"a":' + nested(MAX_JSON_DEPTH) + b"}",
    b'{"conversation_id":"c1","objective_name":"o","output_variables":{"v":' + nested(250) + b"}}",
    b'{"conversation_id":"c1","event_type":"system.new","properties":{"a":' + nested(300) + b"}}",
    b'{"conversation_id":"c1","event_type":"application.perception_analysis","properties":{"analysis":'
    + nested(254, b'{"a":', b"}", b"1") + b"}}",
    b'{"a":' + nested(1022) + b"}",
    b"[" * 100_000,
    nested(100_000),
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
], ids=["limit+1", "objective-250", "unknown-type-300", "perception-254", "1023", "100k-open", "100k-closed",
        "100k-objects"])
def test_nesting_beyond_the_limit_is_400_and_quarantined(pipeline: Pipeline, tmp_path: Path, store_root: Store,
                                                         body: bytes) -> None:
    response = post(pipeline, body)
    assert response.status == 400, response.body
    assert "error" in response.json_body()
    assert quarantined(store_root, body)
    assert not [k for k in assert_confined(tmp_path, store_root) if k.endswith(".json")]


@pytest.mark.parametrize("body", [
    b'{"a": 1e400}', b'{"a": -1e400}', b'{"a": ' + b"9" * 30_103 + b"}",
    b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": nan}',
    b'{"a": "\xff"}', b'{"a": "\xc0\xaf"}', b'{"a": "\xe2\x82"}', b"\xef\xbb\xbf{}", '{"a": 1}'.encode("utf-16"),
    b'{"a": "\\ud800"}', b'{"a": "\\udfff"}', b'{"a": "\\ud800\\u0041"}', b'{"a": "\x01"}', b'{"a": 1,}',
    b"{} {}", b'{"a": 01}',
], ids=["1e400", "-1e400", "30103-digits", "NaN", "Infinity", "-Infinity", "nan", "invalid-utf8", "overlong-utf8",
        "truncated-utf8", "bom", "utf16", "lone-high-surrogate", "lone-low-surrogate", "unpaired-surrogate",
        "raw-control-char", "trailing-comma", "two-values", "leading-zero"])
def test_json_that_is_not_interoperable_is_400_and_quarantined_byte_for_byte(
        pipeline: Pipeline, tmp_path: Path, store_root: Store, body: bytes) -> None:
    response = post(pipeline, body)
    assert response.status == 400 and response.json_body()["error"]
    assert quarantined(store_root, body)
    assert all(k.startswith(f"{PREFIX}quarantine/") for k in assert_confined(tmp_path, store_root))


@pytest.mark.parametrize("literal", [b"9223372036854775807", b"18446744073709551615", b"-9223372036854775808",
                                     b"1.0000000000000000000001", b"1e-400", b"1.7976931348623157e308", b"-0.0",
                                     b"5e-324", b"1E+2", b"-0", b"1234567890123456789.5"])
def test_odd_numbers_within_64_bits_are_stored_exactly(pipeline: Pipeline, store_root: Store, literal: bytes) -> None:
    body = b'{"conversation_id": "c1", "objective_name": "o", "output_variables": {"n": ' + literal + b"}}"
    expected = json.loads(body)
    response = post(pipeline, body)
    assert response.status == 200, response.body
    assert response.json_body()["event_id"] == event_id(expected)
    event_key = next(k for k in written(store_root) if "/events/" in k)
    stored = json.loads(read(store_root, event_key))["data"]["payload"]
    assert stored == expected and type(stored["output_variables"]["n"]) is type(expected["output_variables"]["n"])


@pytest.mark.parametrize("literal", [b"18446744073709551616", b"18446744073709551617", b"-9223372036854775809",
                                     b"1" + b"0" * 300])
def test_integers_beyond_64_bits_are_400_and_quarantined_not_rounded(pipeline: Pipeline, store_root: Store,
                                                                   literal: bytes) -> None:
    # Rounded to a float they would lose digits, and two different callbacks would share one event id.
    body = b'{"conversation_id": "c1", "objective_name": "o", "output_variables": {"n": ' + literal + b"}}"
    response = post(pipeline, body)
    assert response.status == 400 and "64 bits" in response.json_body()["error"]
    assert quarantined(store_root, body)
    assert not [k for k in written(store_root) if k.endswith(".json")]


def test_long_digit_strings_that_are_not_big_integers_are_stored(pipeline: Pipeline, store_root: Store) -> None:
    body = b'{"conversation_id": "c1", "objective_name": "o", "output_variables": {"phone": "123456789012345678901"}}'
    assert post(pipeline, body).status == 200


@pytest.mark.parametrize("timestamp", [1e300, -1e300, 2**62, "99999-01-01T00:00:00Z", "2025-13-45T99:99:99Z",
                                       "2025-07-11T06:45:47Z/../../x", True, [], {}])
def test_a_timestamp_that_is_no_time_is_stored_as_an_invalid_event(pipeline: Pipeline, tmp_path: Path,
                                                                   store_root: Store, timestamp: Any) -> None:
    payload = {**load_event("conversation.system.shutdown.max_call_duration"), "conversation_id": "c1",
               "timestamp": timestamp}
    response = post(pipeline, json.dumps(payload).encode())
    assert response.status == 200 and response.json_body()["valid"] is False
    assert any(k.startswith(f"{PREFIX}c1/events/") for k in assert_confined(tmp_path, store_root))


def test_duplicate_keys_keep_the_last_value_and_the_id_follows_the_parsed_payload(pipeline: Pipeline,
                                                                                  store_root: Store) -> None:
    body = b'{"conversation_id": "../../x", "objective_name": "o", "conversation_id": "c77"}'
    response = post(pipeline, body)
    assert response.status == 200 and response.json_body()["valid"] is True
    parsed = {"conversation_id": "c77", "objective_name": "o"}
    assert response.json_body()["event_id"] == event_id(parsed)
    assert any(k.startswith(f"{PREFIX}c77/events/") for k in written(store_root))
    assert post(pipeline, json.dumps(parsed).encode()).json_body()["status"] == "duplicate"


def test_an_escaped_surrogate_pair_is_one_character(pipeline: Pipeline, store_root: Store) -> None:
    response = post(pipeline, b'{"conversation_id": "c1", "objective_name": "\\ud83d\\ude00"}')
    assert response.status == 200
    event_key = next(k for k in written(store_root) if "/events/" in k)
    assert orjson.loads(read(store_root, event_key))["data"]["payload"]["objective_name"] == "\U0001f600"


@pytest.mark.parametrize("size,status", [(PIPELINE_MAX_BODY - 1, 200), (PIPELINE_MAX_BODY, 200),
                                         (PIPELINE_MAX_BODY + 1, 413)])
def test_a_body_just_under_at_and_just_over_the_limit(pipeline: Pipeline, store_root: Store, size: int,
                                                     status: int) -> None:
    head = b'{"conversation_id": "c1", "objective_name": "o", "pad": "'
    body = head + "é".encode() * ((size - len(head) - 2) // 2) + b"x" * ((size - len(head) - 2) % 2) + b'"}'
    assert len(body) == size
    response = post(pipeline, body)
    assert response.status == status
    assert bool(written(store_root)) == (status == 200)


# -- the token --------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("which", ["first", "last", "none", "prefix", "longer"])
def test_every_configured_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch, count: int,
                                                            which: str) -> None:
    tokens = tuple(f"rotation-token-{i:02d}-0123456789abcdef" for i in range(count))
    presented = {"first": tokens[0], "last": tokens[-1], "none": "some-other-token-0123456789abcdef",
                 "prefix": tokens[-1][:-1], "longer": tokens[0] + "x"}[which]
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    verdict = auth.is_authorized(Request("POST", "/", {"token": presented}), tokens)
    assert verdict == (which in ("first", "last"))
    assert sorted(b for _, b in compared) == sorted(t.encode() for t in tokens)  # each one, once, even after a match
    assert all(a == presented.encode() for a, _ in compared)


def _every_outcome(p: Pipeline, store_path: Path, wrong: list[str]) -> None:
    replica = json.dumps(load_event("conversation.system.replica_joined")).encode()
    failed = json.dumps(load_event("conversation.application.recording_copy_failed")).encode()
    invalid = {**load_event("conversation.application.transcription_ready"), "properties": {"transcript": 1}}
    for token in (TOKEN, ROTATED):
        p.handle(Request("POST", f"/x/{token}/y", {"token": token}, {}, replica))
        p.handle(Request("POST", "/", {}, {"Authorization": f"Bearer {token}", "X-Api-Key": token}, failed))
        p.handle(Request("POST", "/", {"token": token}, {}, json.dumps(invalid).encode()))
        p.handle(Request("POST", "/", {"token": token}, {}, b"not json"))
        p.handle(Request("POST", "/", {"token": token}, {}, b"{" + b" " * PIPELINE_MAX_BODY + b"}"))
        p.handle(Request("GET", f"/healthz?token={token}", {"token": token}))
        p.handle(Request("DELETE", "/", {"token": token}))
    for token in wrong:
        p.handle(Request("POST", "/", {"token": token}, {}, replica))
        p.handle(Request("POST", "/", {}, {"Authorization": f"Bearer {token}"}, replica))
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the file: the write fails
    try:
        p.handle(Request("POST", "/", {"token": TOKEN}, {}, b'{"hello": "world", "timestamp": "2025-01-01T00:00:00Z"}'))
    finally:
        holder.execute("ROLLBACK")


def test_tokens_reach_no_log_record_and_no_stored_object(pipeline: Pipeline, store_root: Store, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    wrong = [TOKEN[:-1], TOKEN + "0", "guess-" + ROTATED]
    with caplog.at_level(logging.DEBUG):
        _every_outcome(pipeline, tmp_path / "store.db", wrong)
    assert {r.levelname for r in caplog.records} >= {"INFO", "WARNING", "ERROR"}  # every path logged something
    for record in caplog.records:
        text = record.getMessage() + json.dumps({k: str(v) for k, v in vars(record).items()})
        for secret in (TOKEN, ROTATED, *wrong):
            assert secret not in text, record
    stored = written(store_root)
    assert len(stored) >= 4
    for key in stored:
        data = read(store_root, key)
        for secret in (TOKEN, ROTATED, *wrong):
            assert secret.encode() not in data, key


# -- over HTTP, against `serve` ---------------------------------------------------------------------

READ_TIMEOUT = 1.5
THREADS = 4  # per worker, 2 workers


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    with running_serve(env={"TAVUS_MAX_BODY_BYTES": str(MAX_BODY)}, threads=THREADS,
                       args=["--read-timeout", str(READ_TIMEOUT)]) as proc:
        yield proc


def exchange(server: ServeProcess, data: bytes, *, close_write: bool = False, timeout: float = 15.0) -> bytes:
    """Send raw bytes; everything the server sends back until it closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
        return received


def head(length: str | int, token: str = TOKENS[0], extra: str = "") -> bytes:
    return (f"POST /?token={token} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def fresh_objective() -> bytes:
    return json.dumps({**load_event("objective"), "conversation_id": f"c{time.monotonic_ns()}"}).encode()


def test_a_content_length_shorter_than_the_body_reads_only_what_it_says(server: ServeProcess) -> None:
    before = set(server.objects())
    body = fresh_objective()
    answer = exchange(server, head(10, extra="Connection: close\r\n") + body)
    assert status_of(answer) == 400 and b"not valid JSON" in answer  # the first 10 bytes, quarantined
    assert all(k.startswith("quarantine/") for k in set(server.objects()) - before)
    assert server.post(body)[0] == 200 and server.alive()


def test_a_content_length_longer_than_a_body_that_ends_stores_nothing(server: ServeProcess) -> None:
    """The client stops sending short of its Content-Length and closes its side: nothing is stored (the
    connection is closed without an answer: there is no whole request to answer) and the server goes on."""
    before = server.objects()
    answer = exchange(server, head(1000) + fresh_objective(), close_write=True)
    assert status_of(answer) in (0, 400), answer[:200]
    assert server.objects() == before
    assert server.post(fresh_objective())[0] == 200


@pytest.mark.parametrize("framing", [
    "Content-Length: 2\r\nContent-Length: 3\r\n",
    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "Content-Length: -1\r\n",
    "Content-Length: +2\r\n",
    "Content-Length: abc\r\n",
    "Content-Length: 0x10\r\n",
    "Transfer-Encoding: gzip, chunked\r\nContent-Length: 2\r\n",
], ids=["two-lengths", "length-and-chunked", "negative", "plus-sign", "not-a-number", "hex", "te-smuggle"])
def test_ambiguous_framing_is_refused_and_stores_nothing(server: ServeProcess, framing: str) -> None:
    before = server.objects()
    data = (f"POST /?token={TOKENS[0]} HTTP/1.1\r\nHost: x\r\n{framing}Connection: close\r\n\r\n").encode()
    answer = exchange(server, data + b"2\r\n{}\r\n0\r\n\r\n")
    assert 400 <= status_of(answer) < 500, answer[:200]
    assert server.objects() == before
    assert server.post(fresh_objective())[0] == 200


def test_clients_that_send_headers_then_stall_are_timed_out_and_others_are_answered(server: ServeProcess) -> None:
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(2 * 2 * THREADS)]
    try:
        for sock in stalled:
            sock.sendall(head(500))  # the body never comes
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: server.post(fresh_objective(), timeout=30)[0], range(8)))
        assert answers == [200] * 8
        assert time.monotonic() - started < 30
        for sock in stalled:  # each is told its body did not come
            received = b""
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                while not received.endswith(b"}") and (chunk := sock.recv(4096)):
                    received += chunk
            assert status_of(received) == 408, received[:200]
    finally:
        for sock in stalled:
            sock.close()


def test_a_body_at_and_over_the_limit_over_http(server: ServeProcess) -> None:
    pad = b'{"conversation_id": "c1", "objective_name": "o", "pad": "'
    at_limit = pad + b"x" * (MAX_BODY - len(pad) - 2) + b'"}'
    assert server.post(at_limit)[0] == 200
    before = server.objects()
    assert server.post(at_limit[:-2] + b'x"}')[0] == 413
    answer = exchange(server, head(MAX_BODY + 1, extra="Connection: close\r\n"))  # refused before the body
    assert status_of(answer) == 413
    assert server.objects() == before


def test_tokens_in_odd_places_reach_no_log_line(server: ServeProcess) -> None:
    secret, wrong = TOKENS[1], TOKENS[0][:-1] + "X"
    body = fresh_objective()
    exchange(server, (f"POST /hooks/{secret}/x?token={secret} HTTP/1.1\r\nHost: x\r\nX-Api-Key: {secret}\r\n"
                      f"Referer: http://h/?token={secret}\r\nContent-Length: {len(body)}\r\n"
                      "Connection: close\r\n\r\n").encode() + body)
    exchange(server, head(2, token=wrong, extra="Connection: close\r\n") + b"{}")
    exchange(server, f"GET /{secret} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
                     "Connection: close\r\n\r\n".encode())
    exchange(server, f"POST /?token={secret} HTTP/1.1\r\nHost: x\r\nBad Header Line {secret}\r\n\r\n".encode())
    exchange(server, f"POST /?token={secret} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     f"Content-Length: 3\r\n\r\n{{}}".encode())
    time.sleep(0.5)
    output = server.output()
    assert '"path":"/hooks/' in output  # the requests were logged
    for token in (secret, wrong):
        assert token not in output
    for key in server.objects():
        assert secret.encode() not in server.read(key)
