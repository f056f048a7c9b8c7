"""The docs/SPEC.md §3 table over real HTTP against a `tavus-callbacks serve` subprocess on a SQLite file."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import RECORDED, load_event
from support.serve_fixture import TOKENS, ServeProcess, running_serve
from tavus_callbacks.record import event_id

MAX_BODY = 64 * 1024
READ_TIMEOUT = 2.0
WRONG_TOKEN = "wrong-token-but-long-enough-0000"
EVENT_FILES = sorted(p.stem for p in RECORDED)


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    with running_serve(env={"TAVUS_MAX_BODY_BYTES": str(MAX_BODY)},
                       args=["--read-timeout", str(READ_TIMEOUT)]) as proc:
        yield proc


def fresh(name: str) -> dict[str, Any]:
    """A recorded payload with its conversation, replica or video id made unique to this call."""
    payload = load_event(name)
    suffix = uuid.uuid4().hex[:10]
    for key, prefix in (("conversation_id", "c"), ("video_id", "v")):
        if key in payload:
            payload[key] = prefix + suffix
    if "replica_id" in payload and "video_id" not in payload:
        payload["replica_id"] = "r" + suffix
    return payload


def request(server: ServeProcess, method: str, path: str = "/", *, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw_exchange(server: ServeProcess, data: bytes, *, timeout: float = 30.0) -> bytes:
    """Send raw bytes and read until the server closes or answers a whole response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            head, sep, rest = received.partition(b"\r\n\r\n")
            if sep:
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)
                if length is not None and len(rest) >= length:
                    break
        return received


def stored_document(server: ServeProcess, eid: str) -> tuple[str, dict[str, Any]]:
    """The one event object named after `eid`: its key and its CloudEvent."""
    keys = [k for k in server.objects() if k.endswith(f"_{eid}.json")]
    assert len(keys) == 1, keys
    return keys[0], json.loads(server.read(keys[0]))


# -- health and authentication ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/healthz", "/tavus/healthz", "/healthz/"])
def test_health_answers_without_a_token(server: ServeProcess, path: str) -> None:
    status, _, body = request(server, "GET", path)
    assert status == 200
    assert json.loads(body) == {"status": "ok"}


@pytest.mark.parametrize("how", ["none", "wrong-query", "wrong-bearer", "empty-bearer", "basic", "other-param"])
def test_missing_or_wrong_token_is_401_without_detail(server: ServeProcess, how: str) -> None:
    before = server.objects()
    body = json.dumps(fresh("conversation.system.replica_joined")).encode()
    path, headers = "/", {"Content-Type": "application/json"}
    if how == "wrong-query":
        path = f"/?token={WRONG_TOKEN}"
    elif how == "wrong-bearer":
        headers["Authorization"] = f"Bearer {WRONG_TOKEN}"
    elif how == "empty-bearer":
        headers["Authorization"] = "Bearer "
    elif how == "basic":
        headers["Authorization"] = f"Basic {TOKENS[0]}"
    elif how == "other-param":
        path = f"/?secret={TOKENS[0]}"
    status, resp_headers, answer = request(server, "POST", path, body=body, headers=headers)
    assert status == 401
    assert json.loads(answer) == {"error": "unauthorized"}
    assert resp_headers["content-type"] == "application/json"
    assert server.objects() == before


@pytest.mark.parametrize("token", TOKENS, ids=["primary", "rotated"])
@pytest.mark.parametrize("where", ["query", "bearer"])
def test_each_configured_token_is_accepted_on_query_and_bearer(server: ServeProcess, token: str, where: str) -> None:
    payload = fresh("conversation.system.replica_joined")
    body = json.dumps(payload).encode()
    if where == "query":
        status, _, answer = request(server, "POST", f"/?token={token}", body=body)
    else:
        status, _, answer = request(server, "POST", "/", body=body, headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    assert json.loads(answer)["status"] == "stored"


# -- methods and sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_with_allow(server: ServeProcess, method: str) -> None:
    before = server.objects()
    body = json.dumps(fresh("guardrail")).encode() if method in ("PUT", "PATCH") else None
    status, headers, answer = request(server, method, f"/?token={TOKENS[0]}", body=body)
    assert status == 405
    assert headers["allow"] == "POST"
    assert "error" in json.loads(answer)
    assert server.objects() == before


def _padded(size: int) -> bytes:
    """A valid guardrail payload of exactly `size` bytes."""
    payload = fresh("guardrail")
    payload["padding"] = ""
    base = len(json.dumps(payload).encode())
    payload["padding"] = "x" * (size - base)
    body = json.dumps(payload).encode()
    assert len(body) == size
    return body


def test_body_at_the_limit_is_stored_and_one_byte_more_is_413(server: ServeProcess) -> None:
    status, _, answer = request(server, "POST", f"/?token={TOKENS[0]}", body=_padded(MAX_BODY))
    assert status == 200, answer
    before = server.objects()
    status, _, answer = request(server, "POST", f"/?token={TOKENS[0]}", body=_padded(MAX_BODY + 1))
    assert status == 413
    assert str(MAX_BODY) in json.loads(answer)["error"]
    assert server.objects() == before


def test_over_limit_is_refused_from_content_length_before_the_body_is_sent(server: ServeProcess) -> None:
    before = server.objects()
    head = (f"POST /?token={TOKENS[0]} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n").encode()
    answer = raw_exchange(server, head + b'{"conversation_id": "c1", ')  # the rest never comes
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert server.objects() == before


def test_over_limit_from_a_stranger_is_401(server: ServeProcess) -> None:
    head = (f"POST /?token={WRONG_TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n").encode()
    assert raw_exchange(server, head).startswith(b"HTTP/1.1 401 ")


def test_chunked_body_over_the_limit_is_413(server: ServeProcess) -> None:
    before = server.objects()
    chunks = [b"x" * 8192] * (MAX_BODY // 8192 + 2)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", f"/?token={TOKENS[0]}", body=iter(chunks), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.status == 413
    finally:
        conn.close()
    assert server.objects() == before


def test_chunked_body_within_the_limit_is_stored(server: ServeProcess) -> None:
    body = json.dumps(fresh("objective")).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", f"/?token={TOKENS[0]}", body=iter([body[:10], body[10:]]), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["status"] == "stored"
    finally:
        conn.close()


def test_a_content_length_that_lies_times_out_and_stores_nothing(server: ServeProcess) -> None:
    before = server.objects()
    head = f"POST /?token={TOKENS[0]} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
    answer = raw_exchange(server, head + b'{"a": 1', timeout=READ_TIMEOUT * 10)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert server.objects() == before


def test_a_body_trickling_in_is_timed_out_as_a_whole(server: ServeProcess) -> None:
    # One byte every 0.3 s keeps every single read under the timeout; the whole body must still arrive in time.
    body = json.dumps(fresh("guardrail")).encode()
    head = f"POST /?token={TOKENS[0]} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    before = server.objects()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT * 10) as sock:
        sock.sendall(head)
        answer = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # the server closed the connection after answering
                break
            sock.settimeout(0.3)
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(4096)
            if answer:
                break
        sock.settimeout(READ_TIMEOUT * 10)
        with contextlib.suppress(OSError):
            answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert time.monotonic() - started < READ_TIMEOUT * 3
    assert server.objects() == before


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    """True when the server ends the connection (EOF or reset) within `wait` s; what it sent before is read."""
    sock.settimeout(wait)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_a_connection_that_sends_nothing_is_closed(server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert closed_by_server(sock, READ_TIMEOUT * 10)


@pytest.mark.parametrize("when", ["first-request", "after-a-response"])
def test_a_head_sent_a_byte_at_a_time_is_closed(server: ServeProcess, when: str) -> None:
    """Each byte comes well within any read timeout; only a deadline on the whole head ends it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        if when == "after-a-response":
            body = json.dumps(fresh("guardrail")).encode()
            sock.sendall(f"POST /?token={TOKENS[0]} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                         .encode() + body)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        closed = False
        for _ in range(int(READ_TIMEOUT * 10 / 0.25)):
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            if closed_by_server(sock, 0.25):
                closed = True
                break
        assert closed, "the server kept a head trickling in for ever"


def test_a_head_larger_than_its_bound_is_refused(server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            for _ in range(64):
                sock.sendall(b"X-Padding: " + b"p" * 1000 + b"\r\n")
                time.sleep(0.01)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_a_stranger_is_answered_401_from_the_head_without_its_body(server: ServeProcess) -> None:
    """The body is never sent: a server that read it before checking the token would answer 408."""
    head = f"POST /?token={WRONG_TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY - 1}\r\n\r\n"
    answer = raw_exchange(server, head.encode(), timeout=READ_TIMEOUT * 10)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


@pytest.mark.parametrize("who", ["over-the-limit", "stranger"])
def test_a_client_that_sends_its_whole_body_before_reading_gets_the_answer(server: ServeProcess, who: str) -> None:
    """The server answers from the head and drops the body as it comes, instead of closing on unread data
    (which resets the connection, and the client never sees why)."""
    token, status = (TOKENS[0], b"413") if who == "over-the-limit" else (WRONG_TOKEN, b"401")
    body = b"x" * (4 * 1024 * 1024)
    before = server.objects()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"POST /?token={token} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        sock.sendall(body)
        answer = b""
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
    assert server.objects() == before


@pytest.mark.parametrize(("query", "status"), [
    (f"token={WRONG_TOKEN}&token={TOKENS[0]}", 401),
    (f"token={TOKENS[0]}&token={WRONG_TOKEN}", 200),
    (f"token=&token={TOKENS[0]}", 401),
], ids=["wrong-then-right", "right-then-wrong", "empty-then-right"])
def test_a_repeated_token_parameter_presents_its_first_value(server: ServeProcess, query: str, status: int) -> None:
    """As on AWS Lambda and Google Cloud (the conformance rule): the first value of `token` is the one presented."""
    body = json.dumps(fresh("guardrail")).encode()
    assert request(server, "POST", f"/?{query}", body=body)[0] == status


def test_a_token_past_the_logged_length_of_the_path_is_not_logged(server: ServeProcess) -> None:
    secret = TOKENS[1]
    path = "/" + "p" * 180 + "/" + secret + "/x"  # it crosses character 200, where the logged path is cut
    request(server, "POST", path, body=b"{}", headers={"Authorization": f"Bearer {TOKENS[0]}"})
    time.sleep(0.5)
    output = server.output()
    assert '"path":"/ppp' in output
    assert all(secret[i:i + 8] not in output for i in range(len(secret) - 7))


def test_slow_clients_do_not_hold_the_workers(server: ServeProcess) -> None:
    # More stalled connections than the server has threads (2 workers x 8), each half-way through its headers:
    # they hold a socket each, never a thread, so the others are answered.
    stalled = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT * 10)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        stalled.append(sock)
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: request(server, "POST", f"/?token={TOKENS[0]}",
                                                      body=json.dumps(fresh("guardrail")).encode()), range(16)))
        assert [status for status, _, _ in answers] == [200] * 16
    finally:
        for sock in stalled:
            sock.close()


def test_pipelined_requests_on_one_connection_are_all_answered(server: ServeProcess) -> None:
    bodies = [json.dumps(fresh("guardrail")).encode() for _ in range(3)]
    data = b"".join(f"POST /?token={TOKENS[0]} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(b)}\r\n\r\n".encode() + b
                    for b in bodies)
    with socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT * 10) as sock:
        sock.sendall(data)
        received = b""
        while received.count(b'"status":"stored"') < 3:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert received.count(b"HTTP/1.1 200 ") == 3


# -- bodies that are not JSON objects --------------------------------------------------------------

@pytest.mark.parametrize("body", [b"not json", b'{"conversation_id": "c1",', b"[1, 2, 3]", b'"text"', b"42",
                                  b"null", b"\xff\xfe{}", b""],
                         ids=["text", "truncated", "array", "string", "number", "null", "bad-utf8", "empty"])
def test_a_body_that_is_not_a_json_object_is_400_and_quarantined(server: ServeProcess, body: bytes) -> None:
    status, headers, answer = request(server, "POST", f"/?token={TOKENS[0]}", body=body)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert "error" in json.loads(answer)
    digest = hashlib.sha256(body).hexdigest()
    matches = [k for k in server.objects("quarantine") if k.endswith(f"/{digest}.bin")]
    assert len(matches) == 1
    assert server.read(matches[0]) == body


# -- storing -----------------------------------------------------------------------------------------

def test_stored_once_then_duplicate_with_the_same_id_whatever_the_formatting(server: ServeProcess) -> None:
    payload = fresh("conversation.application.transcription_ready")
    status, first = server.post(payload)
    assert status == 200
    assert first is not None and first["status"] == "stored"
    assert first["event_id"] == event_id(payload)
    status, again = server.post(payload)
    assert (status, again) == (200, {**first, "status": "duplicate"})
    reordered = json.dumps(dict(reversed(list(payload.items()))), indent=4).encode()
    status, reformatted = server.post(reordered)
    assert (status, reformatted) == (200, {**first, "status": "duplicate"})
    folder = f"{payload['conversation_id']}/events/"
    assert [k for k in server.objects(folder)] == [stored_document(server, first["event_id"])[0]]


def _expected_folder(name: str, payload: dict[str, Any]) -> str:
    if name.startswith(("conversation.", "guardrail", "objective")):
        return f"{payload['conversation_id']}/events/"
    if name.startswith("replica."):
        return f"replicas/{payload['replica_id']}/events/"
    if name.startswith("video."):
        return f"videos/{payload['video_id']}/events/"
    return "unrecognized/"


@pytest.mark.parametrize("name", EVENT_FILES)
def test_every_recorded_payload_is_stored_as_a_cloudevent(server: ServeProcess, name: str) -> None:
    payload = fresh(name)
    status, answer = server.post(payload)
    assert status == 200
    assert answer is not None and answer["status"] == "stored"
    key, document = stored_document(server, answer["event_id"])
    assert key.startswith(_expected_folder(name, payload))
    assert document["specversion"] == "1.0"
    assert document["id"] == answer["event_id"] == event_id(payload)
    assert document["type"] == answer["type"]
    assert document["data"]["payload"] == payload
    assert document["data"]["valid"] is answer["valid"]


def test_unknown_event_type_is_a_normal_stored_event(server: ServeProcess) -> None:
    payload = fresh("conversation.system.replica_joined")
    payload["event_type"] = "system.something_new"
    status, answer = server.post(payload)
    assert status == 200
    assert answer is not None and (answer["status"], answer["valid"]) == ("stored", True)
    key, document = stored_document(server, answer["event_id"])
    assert key.startswith(f"{payload['conversation_id']}/events/")
    assert document["data"]["payload"] == payload


def test_a_known_type_failing_its_schema_is_stored_whole_and_marked_invalid(server: ServeProcess) -> None:
    payload = fresh("conversation.system.shutdown.max_call_duration")
    payload["properties"] = "this should be an object"
    status, answer = server.post(payload)
    assert status == 200
    assert answer is not None and answer["status"] == "stored" and answer["valid"] is False
    _, document = stored_document(server, answer["event_id"])
    assert document["data"]["valid"] is False
    assert document["data"]["errors"]
    assert document["data"]["payload"] == payload


def test_the_conversation_state_is_written_beside_the_events(server: ServeProcess) -> None:
    cid = "c" + uuid.uuid4().hex[:10]
    for name in ("conversation.system.replica_joined", "conversation.system.shutdown.participant_left_timeout",
                 "conversation.application.transcription_ready"):
        payload = load_event(name)
        payload["conversation_id"] = cid
        assert server.post(payload)[0] == 200
    state = json.loads(server.read(f"{cid}/conversation.json"))
    assert state["conversation_id"] == cid
    assert len(state["events"]) == 3
    assert state["shutdown"]["code"] == "participant_left_timeout"
    assert f"{cid}/transcript.json" in server.objects(cid)


# -- the token stays secret (last: it checks everything the module's server wrote) --------------------

def test_tokens_never_reach_the_logs_or_the_store(server: ServeProcess) -> None:
    secrets_seen = [*TOKENS, WRONG_TOKEN]
    body = json.dumps(fresh("conversation.system.replica_joined")).encode()
    request(server, "POST", f"/some/path?token={TOKENS[1]}&x=1", body=body)
    request(server, "POST", "/", body=body, headers={"Authorization": f"Bearer {TOKENS[0]}"})
    request(server, "POST", f"/?token={WRONG_TOKEN}", body=body)
    request(server, "GET", f"/healthz?token={TOKENS[0]}")
    request(server, "POST", f"/?token={TOKENS[0]}", body=b"not json")
    # A malformed request line makes the HTTP server itself log an error about the request.
    raw_exchange(server, f"POST /?token={TOKENS[0]} HTTP/1.1 trailing junk\r\nHost: x\r\n\r\n".encode())
    time.sleep(0.5)  # let the workers flush their last lines
    output = server.output()
    assert '"logger":"tavus_callbacks.access"' in output and '"status":401' in output  # the requests were logged
    for secret in secrets_seen:
        assert secret not in output
    stored = server.objects()
    assert len(stored) > len(EVENT_FILES)
    for key in stored:
        data = server.read(key)
        for secret in secrets_seen:
            assert secret.encode() not in data, key
