"""The token never leaves the request: whatever JSON escape or percent-encoding the body used, it is out of
the stored event, the quarantined bytes, every object key and every log line; an id holding it is no id; in a
URL's query, no mix or depth of percent-encoding hides it."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus

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
    return "\n".join((text, unescaped, *decoded(text), *decoded(unescaped)))


def decoded(text: str) -> list[str]:
    """`text` percent-decoded again and again (ten times at most), `+` kept and read as a space."""
    forms = [text]
    for undo in (unquote, unquote_plus):
        form = text
        for _ in range(10):
            form, before = undo(form), form
            if form == before:
                break
            forms.append(form)
    return forms


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


# -- a URL's query, parsed: any depth or mix of percent-encoding --------------------------------------------

B64_TOKEN = "Zk9+Q2/xL0pR7bT+W3s/Yc=="  # as `openssl rand -base64` gives: `+`, `/` and `=`
SPACED_TOKEN = "my secret token 0123 4567"


def percent_every(text: str, case: str = "upper") -> str:
    """Every byte as %XX; hex letters upper, lower, or alternating ("mixed")."""
    out = []
    for i, byte in enumerate(text.encode()):
        hex_ = f"{byte:02X}"
        out.append("%" + (hex_ if case == "upper" or (case == "mixed" and i % 2) else hex_.lower()))
    return "".join(out)


def percent_some(text: str) -> str:
    """Every other character as %XX (lower-case hex), the rest as it is (unreserved) or %XX (upper-case)."""
    return "".join(percent_every(c, "lower") if i % 2 else quote(c, safe="") for i, c in enumerate(text))


URL_ENCODINGS = {
    "as-written": lambda t: t,
    "quote-default": quote,  # Python's default: keeps `/`, encodes `+`, `=` and a space
    "quote-plus": quote_plus,  # a space as `+`
    "every-byte-upper-hex": percent_every,
    "every-byte-lower-hex": lambda t: percent_every(t, "lower"),
    "every-byte-mixed-hex": lambda t: percent_every(t, "mixed"),
    "partial": percent_some,
    "double": lambda t: quote(quote(t, safe=""), safe=""),
    "double-lower-hex": lambda t: quote(percent_every(t, "lower"), safe=""),
    "double-partial": lambda t: quote(percent_some(t), safe=""),
    "triple": lambda t: quote(quote(quote(t, safe=""), safe=""), safe=""),
    "plus-then-double": lambda t: quote(quote_plus(t), safe=""),
    "space-as-%20-kept-plus": lambda t: quote(t, safe="+/="),
}


@pytest.fixture
def url_pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(Settings(tokens=(B64_TOKEN, SPACED_TOKEN)), store=SQLiteStore(tmp_path / "tavus.db"))


@pytest.mark.parametrize("json_escape", [False, True], ids=["percent", "percent-as-u0025"])
@pytest.mark.parametrize("encoding", sorted(URL_ENCODINGS))
@pytest.mark.parametrize("token", [B64_TOKEN, SPACED_TOKEN], ids=["base64", "spaced"])
def test_a_token_in_webhook_url_is_redacted_however_the_url_encodes_it(
        url_pipeline: Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture, token: str, encoding: str,
        json_escape: bool) -> None:
    written = URL_ENCODINGS[encoding](token)
    url = f"https://example.com/cb?conversation=c1&token={written}&next=%41%2F"
    # The callback URL authenticates as any adapter reads it (the query decoded once), encoded this way or not
    presented = dict(parse_qsl(url.partition("?")[2], keep_blank_values=True))["token"]
    body = json.dumps({**load_event("conversation.system.replica_joined"), "webhook_url": url})
    if json_escape:
        body = body.replace("%", "\\u0025")
    with caplog.at_level(logging.DEBUG):
        response = url_pipeline.handle(Request("POST", "/", {}, {"authorization": f"Bearer {token}"},
                                               body.encode()))
    assert response.status == 200 and response.json_body()["status"] == "stored"
    keys = assert_nowhere(written_out(url_pipeline, tmp_path / "store"), token)
    (event_key,) = [k for k in keys if "/events/" in k]
    stored = orjson.loads((tmp_path / "store" / event_key).read_bytes())["data"]["payload"]
    assert stored["webhook_url"] == "https://example.com/cb?conversation=c1&token=[redacted]&next=%41%2F"
    for record in caplog.records:
        assert token not in readable(json.dumps({**record.__dict__, "msg": record.getMessage()}, default=str).encode())
    if encoding in ("quote-default", "every-byte-upper-hex", "partial"):
        assert presented == token


@pytest.mark.parametrize("url", [
    "https://example.com/cb?token=TOKEN#frag", "HTTP://example.com/cb?a=1&TOKEN", "https://u@h:8/p;x?token=TOKEN&x",
    "https://example.com/cb?TOKEN=1", "https://example.com/cb?redirect=https%3A%2F%2Fx%2F%3Ftoken%3DTOKEN",
], ids=["fragment-kept", "bare-value", "userinfo-port-params", "as-a-name", "nested-url"])
def test_every_query_parameter_holding_a_token_goes_and_the_rest_of_the_url_stays(url_pipeline: Pipeline,
                                                                                 url: str) -> None:
    hidden = url.replace("TOKEN", quote(quote(B64_TOKEN, safe=""), safe=""))
    redacted = url_pipeline.redactor.redact_value({"webhook_url": hidden})["webhook_url"]
    assert all(B64_TOKEN not in form for form in decoded(redacted)), redacted
    assert redacted.startswith(url.partition("?")[0] + "?") and redacted.count("[redacted]") == 1
    assert redacted.endswith("#frag") == url.endswith("#frag")


def test_a_url_that_hides_no_token_is_kept_byte_for_byte(url_pipeline: Pipeline, tmp_path: Path) -> None:
    payload = {**load_event("conversation.system.replica_joined"),
               "webhook_url": "https://example.com/cb?a=%2561&b=+x&token=not-the-token%2B%3D"}
    response = url_pipeline.handle(Request("POST", "/", {"token": B64_TOKEN}, {}, orjson.dumps(payload)))
    assert response.status == 200
    (key,) = [k for k in url_pipeline.store.iter_keys("") if "/events/" in k]
    blob = url_pipeline.store.read(key)
    assert blob is not None and orjson.loads(blob.data)["data"]["payload"] == payload
