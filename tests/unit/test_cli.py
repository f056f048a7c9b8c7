"""The `tavus-callbacks` command as a user runs it: send to a real serve, read the store back, clear errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from conftest import event_path
from support.serve_fixture import TOKENS, ServeProcess, serve_command
from support.servers import free_port
from tavus_callbacks.cli import COMMANDS, main
from tavus_callbacks.cli.send import CONVERSATION_ORDER, SAMPLES
from tavus_callbacks.events.schema import json_schema
from tavus_callbacks.stores.sqlite import SQLiteStore


def cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed command with a clean TAVUS_* environment; its exit code, stdout and stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
    clean.update(env or {})
    return subprocess.run([*serve_command(), *args], env=clean, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_help_lists_the_commands_without_loading_any_of_them() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from tavus_callbacks.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "heavy = ('uvicorn', 'boto3', 'botocore', 'google.cloud.storage', 'google.auth', 'google.api_core',"
        " 'azure.core', 'azure.storage', 'pydantic', 'tavus_callbacks.adapters.asgi',"
        " 'tavus_callbacks.events.normalize',"
        " 'tavus_callbacks.stores')\n"
        "print(sorted({m for m in sys.modules if m.startswith(heavy)}))\n"
        "print(out.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded, _, help_text = result.stdout.partition("\n")
    assert loaded == "[]", loaded
    for command in ("serve", "send", "conversations", "schema"):
        assert re.search(rf"^\s+{command}\s", help_text, re.MULTILINE), help_text


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_registered_command_loads_and_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: tavus-callbacks {command}" in capsys.readouterr().out


def test_no_command_prints_the_usage_and_exits_2() -> None:
    result = cli()
    assert result.returncode == 2
    assert "usage: tavus-callbacks" in result.stderr


def test_schema_prints_the_normalized_events_json_schema() -> None:
    result = cli("schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(json_schema()))


# -- send, then read the store back -------------------------------------------------------------------

def test_send_all_then_list_and_show_the_conversation(serve: ServeProcess) -> None:
    cid = "ccliwhole0001"
    sent = cli("send", "--all", "--url", serve.url, "--token", serve.token, "--conversation-id", cid)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    lines = [line for line in sent.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == len(CONVERSATION_ORDER)
    for line, name in zip(lines, CONVERSATION_ORDER, strict=True):
        assert name in line and " 200 OK " in line and '"status": "stored"' in line
    assert f"{len(CONVERSATION_ORDER)} sent: {len(CONVERSATION_ORDER)} stored" in sent.stdout
    assert serve.token not in sent.stdout + sent.stderr

    serve.settle()  # the change feed derives just after the answers
    listed = cli("conversations", "list", "--store", serve.store_url)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(cid))
    assert re.search(r"\bended\b.*participant_left_timeout\s+9\s+ready\s+9$", row), row
    assert "1 conversation active in the last 7d in" in listed.stdout

    as_json = json.loads(cli("conversations", "list", "--store", serve.store_url, "--json").stdout)
    assert [(c["conversation_id"], c["status"], c["events"], c["shutdown_code"], c["messages"]) for c in as_json] \
        == [(cid, "ended", 9, "participant_left_timeout", 9)]

    shown = cli("conversations", "show", cid, "--store", serve.store_url)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.startswith(f"Conversation {cid}  (ended)")
    for expected in ("participant_left_timeout  \"participant_left_timeout reached\"",
                     "9 messages: 4 user turns, 4 assistant turns (transcript.json)",
                     "ready  s3://acme-tavus-recordings/", "no_pricing_commitments x1",
                     "collect_email  email=jordan@example.com", "send_setup_email: success",
                     "Timeline (9 events, UTC; 2 without a time of their own, last)"):
        assert expected in text, expected
    timeline = text.split("Timeline", 1)[1].splitlines()[1:]
    times = [line.split()[0] for line in timeline]
    assert len(timeline) == 9 and times[-2:] == ["-", "-"], "the guardrail and objective carry no time: last"
    assert times[:-2] == sorted(times[:-2]) and "-" not in times[:-2]
    assert timeline[0].split()[1] == "system.replica_joined"

    state = json.loads(cli("conversations", "show", cid, "--store", serve.store_url, "--json").stdout)
    assert state == json.loads(serve.read(f"{cid}/conversation.json"))


def test_send_named_samples_files_and_bearer(serve: ServeProcess, tmp_path: Path) -> None:
    result = cli("send", "replica_joined", "recording_copy_failed", "--url", serve.url, "--token", serve.token,
                 "--bearer")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" 200 OK ") == 2

    array = tmp_path / "two.json"
    array.write_text(json.dumps([json.loads(event_path("guardrail").read_text()),
                                 json.loads(event_path("objective").read_text())]))
    result = cli("send", "--file", str(event_path("video.ready")), "--file", str(array),
                 "--url", f"{serve.url}?token={serve.token}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" 200 OK ") == 3
    assert "two.json[1]" in result.stdout


def test_send_exits_1_when_any_answer_is_not_2xx(serve: ServeProcess, tmp_path: Path) -> None:
    wrong = cli("send", "guardrail", "--url", serve.url, "--token", "not-the-right-token-at-all")
    assert wrong.returncode == 1
    assert "401 Unauthorized" in wrong.stdout and "not accepted" in wrong.stderr

    junk = tmp_path / "junk.json"
    junk.write_bytes(b"this is not json")
    result = cli("send", "--file", str(junk), "--url", serve.url, "--token", serve.token)
    assert result.returncode == 1
    assert "400 Bad Request" in result.stdout


def test_send_to_nothing_listening_says_unreachable() -> None:
    result = cli("send", "guardrail", "--url", f"http://127.0.0.1:{free_port()}/", "--token", TOKENS[0],
                 "--timeout", "5")
    assert result.returncode == 1
    assert "unreachable" in result.stdout


def test_send_refuses_a_placeholder_token_from_the_environment_and_sends_nothing(serve: ServeProcess) -> None:
    result = cli("send", "guardrail", "--url", serve.url, env={"TAVUS_CALLBACK_TOKENS": "<your-token-here>"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: TAVUS_CALLBACK_TOKENS: token #1 is a placeholder"), result.stderr
    assert "Traceback" not in result.stderr


def test_send_list_names_every_sample() -> None:
    result = cli("send", "--list")
    assert result.returncode == 0
    for name in SAMPLES:
        assert name in result.stdout


# -- serve's own output ---------------------------------------------------------------------------

def test_serve_without_a_token_makes_one_and_prints_the_url_to_paste(
        serve_factory: Callable[..., ServeProcess]) -> None:
    proc = serve_factory(tokens=())
    match = re.search(r"Callback URL: (http://127\.0\.0\.1:\d+/\?token=(\S+))", proc.output())
    assert match, proc.output()
    assert len(match.group(2)) >= 32
    assert "tunnel" in proc.output()
    status, answer = proc.post(json.loads(event_path("guardrail").read_text()), token=match.group(2))
    assert status == 200 and answer is not None and answer["status"] == "stored"


def test_serve_with_a_token_never_prints_it(serve: ServeProcess) -> None:
    assert "Callback URL: " in serve.output() and "?token=<your token>" in serve.output()
    assert all(token not in serve.output() for token in TOKENS)


# -- errors: one line, exit 2, no traceback -----------------------------------------------------------

def _busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize(("args", "env", "says"), [
    (["serve", "--store", "ftp://bucket/x"], {}, "unknown scheme 'ftp'"),
    (["serve", "--token", "short"], {}, "at least 16"),
    (["serve", "--port", "99999"], {}, "out of range"),
    (["serve", "--port", "http"], {}, "not a port number"),
    (["serve", "--workers", "0"], {}, "--workers"),
    (["serve"], {"TAVUS_MAX_BODY_BYTES": "lots"}, "TAVUS_MAX_BODY_BYTES"),
    (["serve"], {"TAVUS_CALLBACK_TOKENS": "tiny"}, "TAVUS_CALLBACK_TOKENS"),
    (["serve"], {"TAVUS_PORT": "-1"}, "TAVUS_PORT"),
    (["send", "guardrail"], {}, "no endpoint"),
    (["send", "guardrail", "--url", "ftp://example.com/"], {}, "not an http(s) URL"),
    (["send", "guardrail", "--url", "http://127.0.0.1:9/"], {}, "no token"),
    (["send", "no_such_event", "--url", "http://127.0.0.1:9/", "--token", TOKENS[0]], {}, "unknown sample event"),
    (["conversations", "list", "--store", "ftp://bucket"], {}, "unknown scheme"),
    (["conversations", "show", "../etc"], {}, "not a conversation id"),
    (["conversations", "list", "--store", "file:///tmp/tavus-data"], {}, "folder store is gone"),
    (["export", "--to", "out", "--conversation", "../x"], {}, "not a conversation id"),
])
def test_bad_options_print_one_clear_error_and_exit_2(args: list[str], env: dict[str, str], says: str,
                                                      tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "store.db")
    env = {"TAVUS_STORE_URL": f"sqlite:///{tmp_path}/store.db", **env}
    result = cli(*args, env=env, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_busy_port_says_so(tmp_path: Path) -> None:
    sock, port = _busy_port()
    with sock:
        result = cli("serve", "--port", str(port), "--store", f"sqlite:///{tmp_path}/store.db", "--token", TOKENS[0],
                     timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")


def test_show_of_an_unknown_conversation_exits_1(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "store.db")
    result = cli("conversations", "show", "cnothere", "--store", f"sqlite:///{tmp_path}/store.db")
    assert result.returncode == 1
    assert "no conversation 'cnothere'" in result.stderr


def test_list_of_an_empty_store(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "store.db")
    result = cli("conversations", "list", "--store", f"sqlite:///{tmp_path}/store.db")
    assert result.returncode == 0
    assert result.stdout.startswith("No conversations active in the last 7d in")


def test_reads_of_a_store_that_is_not_there_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "store.db"
    for args in (["conversations", "list"], ["conversations", "show", "c1"], ["export", "--to", str(tmp_path / "o")],
                 ["replay", "--to", "http://127.0.0.1:9/"], ["doctor"]):
        result = cli(*args, "--store", f"sqlite:///{missing}")
        assert result.returncode in (1, 2) and "no such store" in result.stdout + result.stderr, result
    assert not missing.parent.exists()


def test_reads_never_write_to_the_store(serve: ServeProcess, tmp_path: Path) -> None:
    """conversations, export and replay open the SQLite file read-only: the file is byte for byte the same."""
    assert cli("send", "--all", "--url", serve.url, "--token", serve.token).returncode == 0
    serve.settle()
    store = SQLiteStore(serve.store_url.removeprefix("sqlite:///"), read_only=True)
    before = {key: store.read(key) for key in store.iter_keys("")}  # bytes and version of every object
    assert any(key.endswith("/conversation.json") for key in before)
    for args in (["conversations", "list"], ["export", "--to", str(tmp_path / "files")],
                 ["replay", "--to", f"http://127.0.0.1:{free_port()}/"]):
        cli(*args, "--store", serve.store_url)
    assert {key: store.read(key) for key in store.iter_keys("")} == before


def test_version_and_its_short_form() -> None:
    for flag in ("-V", "--version"):
        result = cli(flag)
        assert result.returncode == 0 and re.fullmatch(r"tavus-callbacks \d+\.\d+\.\d+\S*\n", result.stdout)


def test_conversations_without_an_action_says_which_are_expected() -> None:
    result = cli("conversations")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the following arguments are required" in result.stderr and "{list,show}" in result.stderr, result.stderr
