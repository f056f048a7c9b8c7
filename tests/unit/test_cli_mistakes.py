"""The catalogue of user mistakes: each one run as the user runs it (the installed command, a clean environment),
each ending in at most two lines on stderr that name the fix, exit 2 (usage or configuration) or 1 (a failure),
and never a traceback. Then a closed pipe, and every command fed bad arguments (hypothesis)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import drain
from support.bus_servers import FORWARD_TOKEN, deliver
from support.fake_tavus import FakeTavus
from support.serve_fixture import serve_command
from support.servers import free_port, sqlite_url
from tavus_callbacks.cli.send import CONVERSATION_ORDER, Ids, SampleConversation
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings

TOKEN = "mistakes-test-token-0123456789"
EXAMPLE_TOKEN = json.loads((Path(__file__).parents[2] / "functions/azure/local.settings.json.example").read_text())[
    "Values"]["TAVUS_CALLBACK_TOKENS"]
# No credentials, no region, no metadata service (the test's environment has no other AWS_* variable).
NO_AWS = {"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
          "AWS_EC2_METADATA_DISABLED": "true"}


@dataclass(frozen=True)
class Mistake:
    """What a user typed (`{name}` fields filled from the test's world), and what must come back."""

    args: tuple[str, ...]
    says: str  # the part of the message that names the fix
    code: int = 2
    env: Mapping[str, str] = field(default_factory=dict)
    never: str = ""  # a text the answer must not hold


def m(*args: str, says: str, code: int = 2, env: Mapping[str, str] | None = None, never: str = "") -> Mistake:
    return Mistake(args, says, code, env or {}, never)


MISTAKES: dict[str, Mistake] = {
    # serve
    "serve: unknown store scheme": m("serve", "--store", "ftp://bucket/x", says="use sqlite:///tavus.db"),
    "serve: short token": m("serve", "--token", "short", says="use at least 16"),
    "serve: port out of range": m("serve", "--port", "99999", says="use a number from 1 to 65535"),
    "serve: port not a number": m("serve", "--port", "http", says="--port='http' is not a port number"),
    "serve: no workers": m("serve", "--workers", "0", says="use a number from 1"),
    "serve: body limit not a number": m("serve", env={"TAVUS_MAX_BODY_BYTES": "lots"},
                                        says="TAVUS_MAX_BODY_BYTES='lots' is not a whole number"),
    "serve: short token in the environment": m("serve", env={"TAVUS_CALLBACK_TOKENS": "Xk3-9pQ"},
                                              says="use at least 16"),
    "serve: the example token of local.settings.json.example": m(
        "serve", env={"TAVUS_CALLBACK_TOKENS": EXAMPLE_TOKEN}, says="replace it with a random token"),
    "serve: busy port": m("serve", "--port", "{busy}", says="choose another --port"),
    "serve: sqlite URL without slashes": m("serve", "--store", "sqlite:tavus.db", says="use sqlite:///tavus.db"),
    "serve: unknown log format": m("serve", "--log-format", "xml", says="choose from"),
    "serve: unknown log level in the environment": m("serve", env={"TAVUS_LOG_LEVEL": "loud"},
                                                     says="use debug, info, warning or error"),
    "serve: unknown bus": m("serve", "--forward", "kafka://topic", says="use eventbridge://<bus-name>"),
    "serve: S3 store without credentials": m("serve", "--store", "s3://tavus-bucket/p/", env=NO_AWS,
                                             says="set AWS_PROFILE or AWS_ACCESS_KEY_ID"),
    "serve: a store file that cannot be made": m("serve", "--store", "sqlite:////proc/tavus.db", code=1,
                                                 says="check that the file's folder is writable"),
    # send
    "send: no endpoint": m("send", "guardrail", says="pass --url"),
    "send: not an http URL": m("send", "guardrail", "--url", "ftp://example.com/", says="use e.g. http://"),
    "send: no token": m("send", "guardrail", "--url", "{dead}", says="pass --token"),
    "send: unknown sample": m("send", "no_such_event", "--url", "{dead}", "--token", TOKEN, says="choose one of"),
    "send: missing file": m("send", "--file", "{tmp}/missing.json", "--url", "{dead}", "--token", TOKEN,
                            says="--file {tmp}/missing.json: No such file"),
    "send: zero timeout": m("send", "guardrail", "--url", "{dead}", "--token", TOKEN, "--timeout", "0",
                            says="give a number of seconds above 0"),
    "send: timeout not a number": m("send", "guardrail", "--timeout", "soon", says="invalid float value"),
    "send: nothing named": m("send", "--url", "{dead}", "--token", TOKEN, says="use --all or --file FILE"),
    "send: placeholder token in the environment": m("send", "guardrail", "--url", "{dead}",
                                                    env={"TAVUS_CALLBACK_TOKENS": "<your-token-here>"},
                                                    says="replace it with a random token"),
    "send: nothing listening": m("send", "--all", "--url", "{dead}", "--token", TOKEN, code=1,
                                 says="check --url and that the endpoint runs"),
    # conversations
    "conversations: no action": m("conversations", says="{{list,show}}"),
    "conversations: show without an id": m("conversations", "show", says="required: ID"),
    "conversations: unknown store scheme": m("conversations", "list", "--store", "ftp://bucket",
                                             says="use sqlite:///tavus.db"),
    "conversations: a path for an id": m("conversations", "show", "../etc", "--store", "{store}",
                                         says="is not a conversation id (e.g. c123456)"),
    "conversations: the old folder store": m("conversations", "list", "--store", "file:///tmp/tavus-data",
                                             says="store in a SQLite file instead"),
    "conversations: a store file that does not exist": m("conversations", "list", "--store", "{missing}",
                                                         says="no such store", never="Timeline"),
    "conversations: unknown conversation": m("conversations", "show", "cnothere", "--store", "{store}", code=1,
                                             says="`tavus-callbacks conversations list` shows the ones there are"),
    "conversations: sqlite URL without slashes": m("conversations", "list", "--store", "sqlite:tavus.db",
                                                   says="use sqlite:///tavus.db"),
    "conversations: a text file as the store": m("conversations", "list", "--store", "sqlite:///{text}",
                                                 says="is not a SQLite file"),
    "conversations: another program's SQLite file": m("conversations", "list", "--store", "sqlite:///{other}",
                                                      says="not a store of this package"),
    # export
    "export: no folder": m("export", "--store", "{store}", says="required: --to"),
    "export: a folder that cannot be made": m("export", "--store", "{store}", "--to", "/proc/tavus-export",
                                              says="choose a folder you can write to"),
    "export: a file as the folder": m("export", "--store", "{store}", "--to", "{text}", says="choose a folder"),
    "export: a path for a conversation": m("export", "--store", "{store}", "--to", "{tmp}/out",
                                           "--conversation", "../x", says="is not a conversation id"),
    "export: a store file that does not exist": m("export", "--store", "{missing}", "--to", "{tmp}/out",
                                                  says="no such store"),
    # replay
    "replay: not an endpoint or a bus": m("replay", "--store", "{store}", "--to", "ftp://x",
                                          says="give an http(s):// endpoint"),
    "replay: a date that is not one": m("replay", "--store", "{store}", "--to", "{dead}", "--since", "yesterday",
                                        says="such as 2025-07-11"),
    "replay: nothing listening": m("replay", "--store", "{store}", "--to", "{dead}", "--token", TOKEN, code=1,
                                   says="check that the endpoint runs"),
    "replay: a store file that does not exist": m("replay", "--store", "{missing}", "--to", "{dead}",
                                                  says="no such store"),
    "replay: no destination": m("replay", "--store", "{store}", says="required: --to"),
    # reconcile
    "reconcile: no API key": m("reconcile", "--store", "{store}", says="set it to the API key"),
    "reconcile: no store": m("reconcile", env={"TAVUS_API_KEY": "k"}, says="pass --store URL"),
    "reconcile: a window that is not one": m("reconcile", "--store", "{store}", "--since", "last week",
                                             env={"TAVUS_API_KEY": "k"}, says="a duration such as 72h"),
    "reconcile: empty pages": m("reconcile", "--store", "{store}", "--page-size", "0", env={"TAVUS_API_KEY": "k"},
                                says="--page-size must be at least 1"),
    "reconcile: a refused key": m("reconcile", "--store", "{store}", code=1, says="check TAVUS_API_KEY",
                                  env={"TAVUS_API_KEY": "not-the-key", "TAVUS_API_URL": "{api}"},
                                  never="time budget"),
    # outputs, doctor, recording-storage
    "outputs: no stack": m("outputs", says="required: --stack"),
    "outputs: no region": m("outputs", "--stack", "tavus-callbacks", env=NO_AWS, says="pass --region"),
    "outputs: no credentials": m("outputs", "--stack", "tavus-callbacks", "--region", "us-east-1", env=NO_AWS,
                                 says="run `aws configure`"),
    "doctor: a store file that does not exist": m("doctor", "--store", "{missing}", code=1, says="no such store"),
    "doctor: not a role ARN": m("doctor", "--store", "{store}", "--role-arn", "TavusWriter",
                                says="arn:aws:iam::123456789012:role/TavusRecordingWriter"),
    "doctor: a role with a store that is not S3": m("doctor", "--store", "{store}", "--role-arn",
                                                    "arn:aws:iam::123456789012:role/TavusWriter",
                                                    says="use it with an s3:// store"),
    "recording-storage: not a bucket name": m("recording-storage", "--bucket", "B", "--region", "us-east-1",
                                              "--role-arn", "arn:aws:iam::123456789012:role/W",
                                              says="3 to 63 lower-case letters"),
    "recording-storage: undocumented provider": m("recording-storage", "--provider", "gcs", "--bucket", "b",
                                                  "--region", "us-east-1", "--role-arn", "x", says="use --provider s3"),
    # the command itself
    "no command": m(says="name a COMMAND"),
    "unknown command": m("sever", says="invalid choice"),
    "unknown option": m("schema", "--pretty", says="unrecognized arguments"),
    "completion: unknown shell": m("completion", "powershell", says="choose from 'bash', 'zsh', 'fish'"),
    "build: unknown cloud": m("build", "heroku", says="choose from"),
    "build: a file as the output folder": m("build", "gcp", "--out", "{text_dir}", says="choose another --out"),
}


@dataclass
class World:
    """What the mistakes refer to: a store with a conversation, files of the wrong kind, a dead endpoint."""

    tmp: Path
    values: dict[str, str]

    def fill(self, text: str) -> str:
        return text.format(**self.values)


@pytest.fixture
def world(tmp_path: Path, fake_tavus: FakeTavus) -> Iterator[World]:
    store = tmp_path / "store.db"
    pipeline = Pipeline(Settings(tokens=(FORWARD_TOKEN,), store_url=sqlite_url(store)))
    sample = SampleConversation(Ids("cmistakes01"))
    for name in CONVERSATION_ORDER[:4]:
        assert deliver(pipeline, sample.named(name)).status == 200
    drain(pipeline)
    pipeline.close()
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "gcp").write_text("a file where the bundle's folder goes\n")
    import sqlite3

    with sqlite3.connect(tmp_path / "other.db") as other:
        other.execute("CREATE TABLE notes (text TEXT)")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    with busy:
        yield World(tmp_path, {
            "tmp": str(tmp_path), "store": sqlite_url(store), "missing": sqlite_url(tmp_path / "nowhere" / "x.db"),
            "text": str(tmp_path / "notes.txt"), "other": str(tmp_path / "other.db"),
            "text_dir": str(tmp_path / "bundle"), "dead": f"http://127.0.0.1:{free_port()}/",
            "busy": str(busy.getsockname()[1]), "api": fake_tavus.url})


def run_command(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TAVUS_", "AWS_"))}
    clean.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_EC2_METADATA_DISABLED": "true"})
    clean.update(env)
    return subprocess.run([*serve_command(), *args], env=clean, capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def test_the_catalogue_holds_at_least_30_mistakes_across_the_commands() -> None:
    assert len(MISTAKES) >= 30
    commands = {mistake.args[0] for mistake in MISTAKES.values() if mistake.args}
    assert {"serve", "send", "conversations", "export", "replay", "reconcile", "outputs", "doctor"} <= commands


@pytest.mark.parametrize("name", list(MISTAKES))
def test_a_mistake_is_two_lines_at_most_that_name_the_fix(name: str, world: World) -> None:
    mistake = MISTAKES[name]
    env = {k: world.fill(v) for k, v in mistake.env.items()}
    result = run_command([world.fill(a) for a in mistake.args], env, world.tmp)
    err = result.stderr
    assert "Traceback" not in err and "Traceback" not in result.stdout, err
    assert result.returncode == mistake.code, f"{result.returncode}: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, err
    # what went wrong: an error line, a failure line, or (doctor) the failed check among its report's lines
    assert any(line.startswith(("error: ", "failed: ")) for line in lines) or "\nFAIL  " in f"\n{result.stdout}", err
    assert world.fill(mistake.says) in err + result.stdout, err
    assert "unexpected" not in err, err
    if mistake.never:
        assert mistake.never not in err + result.stdout
    assert not (world.tmp / "nowhere").exists(), "a read created the store it was pointed at"


def test_a_reconcile_without_a_network_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tavus_callbacks.cli import main

    def no_network(host: str, *args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("TAVUS_API_KEY", "some-key")
    monkeypatch.delenv("TAVUS_API_URL", raising=False)
    assert main(["reconcile", "--store", sqlite_url(tmp_path / "store.db")]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: cannot resolve tavusapi.com"), err
    assert "check the network connection" in err and "time budget" not in out + err


# -- a reader that goes away ------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["schema"], ["openapi"], ["conversations", "show", "cmistakes01", "--json"],
                                  ["conversations", "list"], ["send", "--list"]])
def test_a_closed_pipe_ends_quietly(args: list[str], world: World) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
    clean["TAVUS_STORE_URL"] = world.values["store"]
    process = subprocess.Popen([*serve_command(), *args], env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `| head -0` would, before the command writes anything
    err = process.stderr.read()
    code = process.wait(timeout=60)
    assert err == "", err
    assert code == 141
