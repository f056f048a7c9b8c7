"""The inspector in a real headless Chromium against a real `tavus-callbacks serve`: it lists what
`send --all` stored, updates without reloading when a callback arrives, refuses a visitor without the token,
and shows a payload holding `<script>` as text."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from support.serve_fixture import ServeProcess
from tavus_callbacks.cli.send import CONVERSATION_ORDER, Ids, SampleConversation

from inspector.conftest import cli

WAIT = 20.0  # seconds at most for the page to show what arrived (it polls every 2 s)
PWN = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"


def new_id() -> str:
    return "c" + uuid.uuid4().hex[:11]


def rows(page: Any, table: str) -> list[list[str]]:
    """The cells' text of each row of a table body (payload rows left out), read at one instant: the page
    refills its tables whenever something changed."""
    found: list[list[str]] = page.execute_script(
        "return [...document.querySelectorAll('tbody#' + arguments[0] + ' > tr[data-id]')]"
        ".map(tr => [...tr.children].map(td => td.innerText.trim()))", table)
    return found


def row_classes(page: Any, table: str) -> list[str]:
    classes: list[str] = page.execute_script(
        "return [...document.querySelectorAll('tbody#' + arguments[0] + ' > tr[data-id]')].map(tr => tr.className)",
        table)
    return classes


def wait_for(page: Any, check: Callable[[], Any], what: str) -> Any:
    return WebDriverWait(page, WAIT, poll_frequency=0.2).until(lambda _: check(), message=what)


def navigations(page: Any) -> int:
    """How many documents this tab has loaded: a reload would make a new one with its own marker gone."""
    return int(page.execute_script("return window.__loads || 0"))


def mark_document(page: Any) -> None:
    page.execute_script("window.__loads = (window.__loads || 0) + 1")


def no_console_errors(page: Any) -> None:
    errors = [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_the_page_lists_what_send_all_stored(serve: ServeProcess, page: Any) -> None:
    cid = new_id()
    sent = cli("send", "--all", "--url", serve.url, "--token", serve.token, "--conversation-id", cid)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    serve.settle()
    page.get(f"{serve.url}_/?token={serve.token}")
    assert page.current_url == f"{serve.url}_/"  # the token went into the cookie, not the history
    assert serve.token not in page.page_source
    conversations = rows(page, "conversations")
    assert [r[:2] for r in conversations] == [[cid, "ended"]]
    assert conversations[0][5:9] == ["participant_left_timeout", "9", "ready", "9"]
    callbacks = rows(page, "callbacks")
    conversation_events = len(CONVERSATION_ORDER) - 2  # the last two are a replica's and a video's
    assert len(callbacks) == conversation_events and {r[3] for r in callbacks} == {cid}
    assert {r[1] for r in callbacks} >= {"system.replica_joined", "system.shutdown", "guardrail.triggered",
                                         "objective.completed", "application.transcription_ready"}
    assert all(r[2] == "200 stored" for r in callbacks)
    assert sorted(r[1] for r in rows(page, "others")) == ["replica.ready", "video.ready"]

    page.find_element(By.LINK_TEXT, cid).click()
    wait_for(page, lambda: page.find_elements(By.ID, "turns"), "the conversation's page")
    assert page.title == f"Conversation {cid}"
    fields = page.find_element(By.ID, "fields").text
    for expected in ("participant_left_timeout", "9 messages: 4 user turns, 4 assistant turns", "s3://acme-tavus",
                     "no_pricing_commitments x1", "collect_email: email=jordan@example.com"):
        assert expected in fields
    turns = page.find_elements(By.CSS_SELECTOR, "#turns li")
    assert len(turns) == 9 and "Hi, I'm Maya." in turns[1].text
    assert page.find_element(By.ID, "perception").text.startswith("## Visual summary")
    assert len(rows(page, "timeline")) == conversation_events
    no_console_errors(page)


def test_the_page_updates_when_a_callback_arrives(serve: ServeProcess, page: Any) -> None:
    first = SampleConversation(Ids(new_id()))
    assert serve.post(first.replica_joined())[0] == 200
    serve.settle()
    page.get(f"{serve.url}_/?token={serve.token}")
    mark_document(page)
    assert len(rows(page, "callbacks")) == 1

    assert serve.post(first.shutdown())[0] == 200  # a new event in a conversation shown
    wait_for(page, lambda: len(rows(page, "callbacks")) == 2, "the shutdown in the list of callbacks")
    assert rows(page, "conversations")[0][1] == "ended"
    assert rows(page, "callbacks")[0][1] == "system.shutdown" and row_classes(page, "callbacks")[0] == "new"

    second = SampleConversation(Ids(new_id()), start=dt.datetime.now(dt.UTC))  # a new conversation, later
    assert serve.post(second.replica_joined())[0] == 200
    wait_for(page, lambda: len(rows(page, "conversations")) == 2, "the new conversation")
    assert rows(page, "conversations")[0][0] == second.ids.conversation_id  # latest activity first
    assert navigations(page) == 1  # all without a reload
    assert page.find_element(By.ID, "live").text.startswith("live")

    page.find_element(By.LINK_TEXT, first.ids.conversation_id).click()
    wait_for(page, lambda: page.title.startswith("Conversation"), "the conversation's page")
    mark_document(page)
    assert page.find_element(By.ID, "note-transcript").text == "No transcript yet."
    assert serve.post(first.transcription_ready())[0] == 200
    wait_for(page, lambda: len(page.find_elements(By.CSS_SELECTOR, "#turns li")) == 9, "the transcript's turns")
    assert len(rows(page, "timeline")) == 3 and navigations(page) == 1
    no_console_errors(page)


def test_a_visitor_without_the_token_is_refused(serve: ServeProcess, page: Any) -> None:
    cid = new_id()
    assert serve.post(SampleConversation(Ids(cid)).replica_joined())[0] == 200
    serve.settle()
    for path in ("_/", f"_/c/{cid}", "_/?token=wrong-token-but-long-enough-0000"):
        page.get(f"{serve.url}{path}")
        assert page.title == "Token needed", path
        assert cid not in page.page_source
        assert not page.get_cookies()
    page.get(f"{serve.url}_/?token={serve.token}")
    assert cid in page.find_element(By.ID, "conversations").text
    cookie = next(c for c in page.get_cookies() if c["name"] == f"tavus_inspector_{serve.port}")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/_/"
    assert page.execute_script("return document.cookie") == ""  # out of the page script's reach
    page.execute_cdp_cmd("Network.clearBrowserCookies", {})
    page.get(f"{serve.url}_/")
    assert page.title == "Token needed"


def test_a_payload_holding_script_is_shown_as_text(serve: ServeProcess, page: Any) -> None:
    cid = new_id()
    sample = SampleConversation(Ids(cid))
    shutdown = sample.shutdown()
    shutdown["properties"]["shutdown_reason"] = PWN
    for payload in ({"conversation_id": cid, "properties": {"guardrail": PWN}}, shutdown,
                    {"conversation_id": cid, "objective_name": PWN, "output_variables": {PWN: PWN}}):
        assert serve.post(payload)[0] == 200
    serve.settle()
    page.get(f"{serve.url}_/?token={serve.token}")
    callbacks = rows(page, "callbacks")
    assert PWN in {r[4] for r in callbacks}  # the guardrail's name, as text
    assert any(PWN in r[4] for r in callbacks if r[1] == "system.shutdown")

    guardrail = next(i for i, r in enumerate(rows(page, "callbacks")) if r[1] == "guardrail.triggered")
    page.find_elements(By.CSS_SELECTOR, "tbody#callbacks > tr[data-id] button.show")[guardrail].click()
    shown = wait_for(page, lambda: next((p.text for p in page.find_elements(By.CSS_SELECTOR, "tr.payload pre")
                                         if "conversation_id" in p.text), None), "the payload")
    assert PWN.replace('"', '\\"') in shown  # the JSON of the payload, its string as written

    page.get(f"{serve.url}_/c/{cid}")
    fields = page.find_element(By.ID, "fields").text
    assert PWN in fields
    assert [r[3] for r in rows(page, "timeline") if r[1] == "guardrail.triggered"] == [PWN]
    assert page.execute_script("return window.__pwned === undefined && document.scripts.length === 1")
    assert page.find_elements(By.CSS_SELECTOR, "main img, main script") == []
    no_console_errors(page)
