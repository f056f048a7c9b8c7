"""The token never leaves the request: whatever JSON escape or percent-encoding the body used, it is out of
the stored event, the quarantined bytes, every object key and every log line; an id holding it is no id."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import orjson
import pytest
from conftest import exported, load_event
from tavus_callbacks.http import Request, Response
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores.sqlite import SQLiteStore

TOKEN = "rel-Secret/Tok_en.9fK2"  # a slash, so `\/` and `%2F` can hide it
WIDE_TOKEN = "tök€n-😀-9fK2xQ7vLm"  # beyond ASCII and beyond the BMP: `\u00f6`, `\u20ac`, a surrogate pair
DIGITS_TOKEN = "8473625190837465"


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(Settings(tokens=(TOKEN, WIDE_TOKEN, DIGITS_TOKEN)), store=SQLiteStore(tmp_path / "tavus.db"))


def post(p: Pipeline, body: bytes) -> Response:
    return p.handle(Request("POST", "/", {}, {"authorization": f"Bearer {TOKEN}"}, body))


def escape_every(text: str, fmt: str = "\\u{:04x}") -> str:
    """Every character as a \\uXXXX escape (a surrogate pair beyond the BMP), in the hex case of `fmt`."""
    units = text.encode("utf-16-be")
    return "".join(fmt.format(int.from_bytes(units[i:i + 2], "big")) for i in range(0, len(units), 2))


def escape_some(text: str) -> str:
    """Every other character escaped, hex case alternating, slashes as `\\/`."""
    out = []
    for i, char in enumerate(text):
        if char == "/":
            out.append("\\/")
        elif i % 2:
            out.append(escape_every(char, "\\u{:04X}" if i % 4 == 1 else "\\u{:04x}"))
        else:
            out.append(char)
    return "".join(out)


# How a body may write a token inside a JSON string.
ENCODINGS = {
    "as-written": lambda t: t,
    "every-char-lower-hex": lambda t: escape_every(t),
    "every-char-upper-hex": lambda t: escape_every(t, "\\u{:04X}"),
    "mixed-case-and-slash": escape_some,
    "escaped-slash-only": lambda t: t.replace("/", "\\/"),
    "slash-as-u002F": lambda t: t.replace("/", "\\u002F"),
    "percent-encoded": lambda t: quote(t, safe=""),
    "percent-encoded-lower-hex": lambda t: re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(t, safe="")),
}


def readable(data: bytes) -> str:
    """Everything a reader of these bytes could recover: JSON escapes and percent-encoding undone."""
    text = data.decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        text += json.dumps(json.loads(data), ensure_ascii=False)
    unescaped = re.sub(r"(\\u[0-9a-fA-F]{4})+", lambda m: m.group(0).encode().decode("unicode_escape")
                       .encode("utf-16", "surrogatepass").decode("utf-16", "replace"), text).replace("\\/", "/")
    return "\n".join((text, unescaped, unquote(text), unquote(unescaped)))


def written_out(p: Pipeline, to: Path) -> Path:
    """The pipeline's store written out as plain files under `to` (`tavus-callbacks export`)."""
    exported(p.store, to)
    return to


def assert_nowhere(store: Path, *tokens: str) -> list[str]:
    """The store's keys; no key and no object holds a token in any form."""
    keys = []
    for path in sorted(p for p in store.rglob("*") if p.is_file() and not p.name.startswith(".")):
        key = path.relative_to(store).as_posix()
        keys.append(key)
        seen = readable(path.read_bytes()) + readable(key.encode())
        for token in tokens:
            assert token not in seen, (key, token)
    return keys


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("token", [TOKEN, WIDE_TOKEN], ids=["ascii", "wide"])
def test_a_token_in_a_payload_is_redacted_whatever_its_encoding(pipeline: Pipeline, tmp_path: Path,
                                                                  encoding: str, token: str) -> None:
    written = ENCODINGS[encoding](token)
    payload = load_event("conversation.system.replica_joined")
    body = json.dumps(payload)[:-1] + f', "webhook_url": "https://example.com/cb?token={written}"}}'
    assert token not in body or written == token, "the body holds the token only in its encoded form"
    response = post(pipeline, body.encode())
    assert response.status == 200 and response.json_body()["status"] == "stored"
    keys = assert_nowhere(written_out(pipeline, tmp_path / "store"), token)
    (event_key,) = [k for k in keys if "/events/" in k]
    stored = orjson.loads((tmp_path / "store" / event_key).read_bytes())["data"]["payload"]
    assert stored["webhook_url"] == "https://example.com/cb?token=[redacted]"


@pytest.mark.parametrize("encoding", ["as-written", "every-char-upper-hex", "mixed-case-and-slash"])
@pytest.mark.parametrize("where", ["equal", "containing"])
def test_an_id_holding_the_token_is_no_key_nor_folder_and_the_event_is_invalid(
        pipeline: Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture, encoding: str, where: str) -> None:
    written = ENCODINGS[encoding](TOKEN)
    payload = load_event("conversation.system.shutdown.max_call_duration")
    payload["conversation_id"] = "PLACEHOLDER"
    value = written if where == "equal" else f"c123-{written}-x"
    body = json.dumps(payload).replace("PLACEHOLDER", value).encode()
    with caplog.at_level(logging.DEBUG, logger="tavus_callbacks"):
        response = post(pipeline, body)
    assert response.status == 200 and response.json_body()["valid"] is False
    assert response.outcome is not None and response.outcome.conversation_id is None
    keys = assert_nowhere(written_out(pipeline, tmp_path / "store"), TOKEN)
    assert [k.split("/")[0] for k in keys] == ["unrecognized"]
    document = orjson.loads((tmp_path / "store" / keys[0]).read_bytes())
    assert "[redacted]" in document["data"]["payload"]["conversation_id"]
    assert any("conversation_id" in e for e in document["data"]["errors"])
    for record in caplog.records:
        assert TOKEN not in readable(json.dumps({**record.__dict__, "msg": record.getMessage()}, default=str).encode())


def test_a_token_in_a_key_or_as_a_number_is_redacted(pipeline: Pipeline, tmp_path: Path) -> None:
    body = json.dumps({"replica_id": "r1", "status": "ready", "extra": {"PLACEHOLDER": 1, "n": [0]}})
    body = body.replace("PLACEHOLDER", escape_every(TOKEN)).replace("[0]", f"[{DIGITS_TOKEN}]")
    assert post(pipeline, body.encode()).status == 200
    keys = assert_nowhere(written_out(pipeline, tmp_path / "store"), TOKEN, DIGITS_TOKEN)
    stored = orjson.loads((tmp_path / "store" / keys[0]).read_bytes())["data"]["payload"]
    assert stored["extra"] == {"[redacted]": 1, "n": ["[redacted]"]}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("shape", ["not-json", "json-array"])
def test_a_quarantined_body_is_stored_without_the_token(pipeline: Pipeline, tmp_path: Path, encoding: str,
                                                        shape: str) -> None:
    written = ENCODINGS[encoding](TOKEN)
    body = (f'{{"webhook_url": "https://x/?token={written}", truncated' if shape == "not-json"
            else f'["https://x/?token={written}", 1]').encode()
    response = post(pipeline, body)
    assert response.status == 400
    (key,) = assert_nowhere(written_out(pipeline, tmp_path / "store"), TOKEN)
    assert key.startswith("quarantine/") and b"[redacted]" in (tmp_path / "store" / key).read_bytes()


def test_a_body_without_the_token_is_stored_byte_for_byte(pipeline: Pipeline, tmp_path: Path) -> None:
    """Escapes that hide no token change nothing: same id as the unescaped body, text kept."""
    payload = load_event("conversation.application.transcription_ready")
    payload["properties"]["transcript"][0]["content"] = "caf\u00e9 \u2019quoted\u2019 a/b"
    plain = post(pipeline, json.dumps(payload, ensure_ascii=False).encode()).json_body()
    escaped = post(pipeline, json.dumps(payload).replace("/", "\\/").encode()).json_body()
    assert (plain["status"], escaped["status"]) == ("stored", "duplicate")
    (key,) = [k for k in assert_nowhere(written_out(pipeline, tmp_path / "store"), TOKEN) if "/events/" in k]
    stored: dict[str, Any] = orjson.loads((tmp_path / "store" / key).read_bytes())["data"]["payload"]
    assert stored == payload
