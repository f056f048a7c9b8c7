"""The inspector of a real `tavus-callbacks serve` over plain HTTP: who gets in, what every answer carries,
what the endpoints give, and hostile payloads escaped in every page."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from support.serve_fixture import TOKENS, ServeProcess, running_serve
from tavus_callbacks.cli.send import Ids, SampleConversation
from tavus_callbacks.inspector.app import session_value

from inspector.conftest import get, session_cookie

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
ESCAPED = "&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;"


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    with running_serve() as proc:
        yield proc


def new_id() -> str:
    return "c" + uuid.uuid4().hex[:11]


def whole_conversation(server: ServeProcess, cid: str | None = None) -> tuple[str, SampleConversation]:
    """Every conversation callback of one sample conversation, stored and folded."""
    sample = SampleConversation(Ids(cid or new_id()))
    for name in ("replica_joined", "pal_joined", "objective", "guardrail", "shutdown", "transcription_ready",
                 "recording_ready", "perception_analysis", "post_call_action_executed"):
        status, _ = server.post(sample.named(name))
        assert status == 200, name
    server.settle()
    cid = sample.ids.conversation_id
    derived = {f"{cid}/transcript.json", f"{cid}/perception.json"}  # written just after conversation.json
    deadline = time.monotonic() + 30
    while not derived <= set(server.objects(cid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return cid, sample


def hostile_conversation(server: ServeProcess) -> str:
    """A conversation whose callbacks carry markup in every field the pages show."""
    sample = SampleConversation(Ids(new_id()))
    cid = sample.ids.conversation_id
    shutdown = sample.shutdown()
    shutdown["properties"]["shutdown_reason"] = HOSTILE
    transcript = sample.transcription_ready()
    transcript["properties"]["transcript"][1]["content"] = HOSTILE
    transcript["properties"]["transcript"][2]["role"] = HOSTILE
    perception = sample.perception_analysis()
    perception["properties"]["analysis"] = HOSTILE
    joined = sample.replica_joined()
    joined["properties"]["replica_id"] = HOSTILE
    for payload in (joined, shutdown, transcript, perception,
                    {"conversation_id": cid, "properties": {"guardrail": HOSTILE}},
                    {"conversation_id": cid, "objective_name": HOSTILE, "output_variables": {HOSTILE: HOSTILE}}):
        status, _ = server.post(payload)
        assert status == 200
    server.settle()
    return cid


def bearer(token: str = TOKENS[0]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def event_key(server: ServeProcess, cid: str, kind: str) -> str:
    return next(k for k in server.objects(f"{cid}/events") if kind in k)


# -- who gets in ---------------------------------------------------------------------------------------

def test_without_the_token_every_page_and_endpoint_is_401_and_tells_nothing(server: ServeProcess) -> None:
    cid, _ = whole_conversation(server)
    key = event_key(server, cid, "shutdown")
    paths = ["/_/", f"/_/c/{cid}", "/_/api/recent", f"/_/api/c/{cid}", f"/_/api/event?key={quote(key)}",
             "/_/nothing-here"]
    forged = session_value(TOKENS[0], "http://127.0.0.1:1")  # the right token's cookie for another address
    refusals = [{}, {"Authorization": "Bearer wrong-token-but-long-enough-0000"},
                {"Cookie": f"tavus_inspector_{server.port}={forged}"}, {"Cookie": f"tavus_inspector_{server.port}="},
                {"Cookie": f"tavus_inspector_1={session_value(TOKENS[0], server.url[:-1])}"},  # another port's name
                {"Cookie": f"other={session_value(TOKENS[0], server.url[:-1])}"},  # the right value, another name
                {"Authorization": f"Basic {TOKENS[0]}"}]
    for path in paths:
        for headers in refusals:
            answer = get(server.url, path, headers)
            assert answer.status == 401, (path, headers, answer.status)
            assert cid not in answer.text and "set-cookie" not in answer.headers
            assert answer.headers["www-authenticate"] == "Bearer"
        wrong = get(server.url, f"{path}{'&' if '?' in path else '?'}token=wrong-token-but-long-enough-0000")
        assert wrong.status == 401 and cid not in wrong.text
    assert "Token needed" in get(server.url, "/_/").text
    assert get(server.url, "/_/api/recent").json() == {"error": "unauthorized"}


@pytest.mark.parametrize("token", TOKENS)
def test_the_token_once_becomes_a_session_cookie_and_leaves_the_address(server: ServeProcess, token: str) -> None:
    cid, _ = whole_conversation(server)
    entered = get(server.url, f"/_/c/{cid}?token={quote(token)}&x=1")
    assert entered.status == 303
    assert entered.headers["location"] == f"/_/c/{cid}?x=1"
    cookie = entered.headers["set-cookie"]
    attributes = {part.strip() for part in cookie.split(";")[1:]}
    assert attributes == {"Path=/_/", "HttpOnly", "SameSite=Strict"}
    assert token not in cookie
    assert cookie.startswith(f"tavus_inspector_{server.port}=")  # another inspector on this host keeps its own
    page = get(server.url, f"/_/c/{cid}", {"Cookie": f"other=1; {session_cookie(entered)}"})
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert f"Conversation {cid}" in page.text
    assert token not in page.text


def test_a_bearer_token_reads_the_json(server: ServeProcess) -> None:
    cid, _ = whole_conversation(server)
    recent = get(server.url, "/_/api/recent", bearer(TOKENS[1]))
    assert recent.status == 200 and recent.headers["content-type"] == "application/json"
    data = recent.json()
    row = next(r for r in data["tables"]["conversations"] if r["id"] == cid)
    assert row["cells"][:3] == [cid, "ended", row["cells"][2]] and row["href"] == f"/_/c/{cid}"
    assert sum(r["cells"][3] == cid for r in data["tables"]["callbacks"]) == 9
    assert "set-cookie" not in recent.headers  # a script's credential stays a header


def test_only_the_listening_address_is_answered(server: ServeProcess) -> None:
    port = server.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", f"tunnel.ngrok.io:{port}",
                 f"10.0.0.1:{port}", ""):
        answer = get(server.url, "/_/", {**bearer(), "Host": host})
        assert answer.status == 421, host
        assert f"http://127.0.0.1:{port}/_/" in answer.text
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert get(server.url, "/_/", {**bearer(), "Host": host}).status == 200, host


def test_the_inspector_only_reads(server: ServeProcess) -> None:
    before = server.objects()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        answer = get(server.url, "/_/", bearer(), method=method, body=b'{"conversation_id": "cnotstored01"}')
        assert answer.status == 405 and answer.headers["allow"] == "GET"
    assert server.objects() == before
    assert get(server.url, "/_", bearer()).headers["location"] == "/_/"


@pytest.mark.parametrize("path", ["/_/", "/_/api/recent", "/_/c/cnosuchconv01", "/_/nothing"])
@pytest.mark.parametrize("authorized", [True, False])
def test_every_answer_has_a_strict_content_security_policy(server: ServeProcess, path: str, authorized: bool) -> None:
    answer = get(server.url, path, bearer() if authorized else {})
    policy = dict(part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='", policy["script-src"]), policy
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='", policy["style-src"]), policy
    assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert policy["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cache-control"] == "no-store"


# -- what the pages show, escaped ------------------------------------------------------------------------

def test_hostile_payloads_are_shown_as_text_in_every_page(server: ServeProcess) -> None:
    cid = hostile_conversation(server)
    for path in ("/_/", f"/_/c/{cid}"):
        page = get(server.url, path, bearer()).text
        assert page.count("<script") == 1, path  # the page's own script, nothing from a payload
        assert "<img" not in page and 'onerror="' not in page
        assert ESCAPED in page, path
    shown = get(server.url, f"/_/c/{cid}", bearer()).text
    assert shown.count(ESCAPED) >= 6  # replica, shutdown reason, a turn's role and content, perception, guardrail...
    data = get(server.url, f"/_/api/c/{cid}", bearer()).json()
    assert any(turn[2] == HOSTILE for turn in data["turns"]) and any(turn[0] == HOSTILE for turn in data["turns"])
    assert data["perception"] == HOSTILE  # JSON keeps the text as it came; the page's script sets it as text


def test_a_conversation_page_shows_its_timeline(server: ServeProcess) -> None:
    cid, sample = whole_conversation(server)
    data = get(server.url, f"/_/api/c/{cid}", bearer()).json()
    fields = dict((label, lines) for label, lines in data["fields"])
    assert fields["Status"] == ["ended"]
    assert fields["Shutdown"] == ['participant_left_timeout  "participant_left_timeout reached"']
    assert fields["Transcript"] == ["9 messages: 4 user turns, 4 assistant turns (transcript.json)"]
    assert fields["Recording"][0].startswith("ready  s3://acme-tavus-recordings/")
    assert fields["Guardrails"] == ["no_pricing_commitments x1"]
    assert fields["Objectives"] == ["collect_email: email=jordan@example.com, storage_provider=s3"]
    assert [turn[0] for turn in data["turns"]] == [role for role, _ in _turns(sample)]
    assert data["perception"].startswith("## Visual summary")
    timeline = [row["cells"] for row in data["tables"]["timeline"]]
    assert [cells[1] for cells in timeline[:7]] == [
        "system.replica_joined", "system.pal_joined", "system.shutdown", "application.transcription_ready",
        "application.recording_ready", "application.perception_analysis", "application.post_call_action_executed"]
    assert {(cells[0], cells[1]) for cells in timeline[7:]} == {  # no time of their own: last
        ("(no time given)", "guardrail.triggered"), ("(no time given)", "objective.completed")}
    assert all(cells[2] == "200 stored" for cells in timeline)


def _turns(sample: SampleConversation) -> list[tuple[str, str]]:
    return [(t["role"], t["content"]) for t in sample.transcription_ready()["properties"]["transcript"]]


def test_the_event_endpoint_gives_stored_events_only(server: ServeProcess) -> None:
    cid, _ = whole_conversation(server)
    key = event_key(server, cid, "shutdown")
    document = get(server.url, f"/_/api/event?key={quote(key)}", bearer()).json()
    assert document["specversion"] == "1.0" and document["data"]["payload"]["conversation_id"] == cid
    for other in (f"{cid}/conversation.json", f"{cid}/transcript.json", f"../{key}", f"{cid}/events/../../{key}",
                  "", "/etc/passwd", f"{cid}/events/nothing.json"):
        answer = get(server.url, f"/_/api/event?key={quote(other)}", bearer())
        assert answer.status == 404, other


def test_the_json_says_only_its_version_until_something_changes(server: ServeProcess) -> None:
    first = get(server.url, "/_/api/recent", bearer()).json()
    same = get(server.url, f"/_/api/recent?version={first['version']}", bearer()).json()
    assert same == {"version": first["version"]}
    cid, _ = whole_conversation(server)
    changed = get(server.url, f"/_/api/recent?version={first['version']}", bearer()).json()
    assert changed["version"] != first["version"]
    assert any(row["id"] == cid for row in changed["tables"]["conversations"])
    one = get(server.url, f"/_/api/c/{cid}", bearer()).json()
    assert get(server.url, f"/_/api/c/{cid}?version={one['version']}", bearer()).json() == {"version": one["version"]}


@pytest.mark.parametrize("cid", ["cnosuchconv01", "..", "a%2Fb", "%3Cscript%3E"])
def test_an_unknown_conversation_is_404(server: ServeProcess, cid: str) -> None:
    page = get(server.url, f"/_/c/{cid}", bearer())
    assert page.status == 404 and page.text.count("<script") == 1
    assert "No such conversation" in page.text
    assert get(server.url, f"/_/api/c/{cid}", bearer()).status == 404
