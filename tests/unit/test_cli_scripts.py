"""Output for scripts: `--json` on the commands that report something (one document, or JSON lines for doctor's
checks), their fields named in --help, shell completion for bash, zsh and fish."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from support.fake_tavus import FakeTavus, conversation_callbacks
from support.serve_fixture import ServeProcess, serve_command
from support.servers import free_port, sqlite_url
from tavus_callbacks.cli.send import CONVERSATION_ORDER, SAMPLES
from tavus_callbacks.stores.sqlite import SQLiteStore


def cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
    clean.update(env or {})
    return subprocess.run([*serve_command(), *args], env=clean, capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)


# Each command that reports something, and a field its --json help must name.
REPORTING = {("send",): "deliveries", ("conversations", "list"): "conversation_id",
             ("conversations", "show"): "conversation.json", ("doctor",): "status", ("replay",): "duplicate",
             ("export",): "written", ("outputs",): "callback_url", ("reconcile",): "recovered",
             ("serve",): "conversation_id"}


@pytest.mark.parametrize("command", sorted(REPORTING))
def test_the_help_of_json_names_the_fields(command: tuple[str, ...]) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    flag = "--log-format" if command == ("serve",) else "--json"
    assert flag in text and REPORTING[command] in text.split(flag, 2)[-1], text


def test_send_json_is_one_document(serve: ServeProcess) -> None:
    result = cli("send", "--all", "--url", serve.url, "--token", serve.token, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sent"] == len(CONVERSATION_ORDER) and report["counts"] == {"stored": len(CONVERSATION_ORDER)}
    assert [d["label"] for d in report["deliveries"]] == list(CONVERSATION_ORDER)
    assert all(d["status"] == 200 and d["answer"]["status"] == "stored" for d in report["deliveries"])
    assert report["stopped"] is None and serve.token not in result.stdout
    assert json.loads(cli("send", "--list", "--json").stdout) == SAMPLES


def test_send_json_says_why_it_stopped() -> None:
    result = cli("send", "--all", "--url", f"http://127.0.0.1:{free_port()}/", "--token", "a-token-0123456789abc",
                 "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["sent"] == 3 and report["failed"] == 3
    assert "reached nobody" in report["stopped"] and {d["status"] for d in report["deliveries"]} == {0}


def test_doctor_json_lines_one_per_check(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "store.db")
    result = cli("doctor", "--store", sqlite_url(tmp_path / "store.db"), "--json")
    assert result.returncode == 0, result.stderr
    checks = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(checks) == 6 and {c["status"] for c in checks} == {"PASS"}
    assert all(set(c) == {"status", "what", "fix"} for c in checks)


def test_reconcile_json(fake_tavus: FakeTavus, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    fake_tavus.add("cjson001", conversation_callbacks("cjson001", datetime.now(UTC) - timedelta(minutes=20)))
    env = {"TAVUS_API_KEY": os.environ["TAVUS_API_KEY"], "TAVUS_API_URL": fake_tavus.url, "TAVUS_API_MAX_RPM": "0"}
    result = cli("reconcile", "--store", sqlite_url(tmp_path / "store.db"), "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["recovered"] == 5 and report["failures"] == [] and report["finished"] is True
    assert report["stopped"] is None and report["skipped"] == [] and report["requests"] >= 2


def test_a_refused_key_is_not_called_the_time_budget(fake_tavus: FakeTavus, tmp_path: Path) -> None:
    env = {"TAVUS_API_KEY": "not-the-key", "TAVUS_API_URL": fake_tavus.url, "TAVUS_API_MAX_RPM": "0"}
    result = cli("reconcile", "--store", sqlite_url(tmp_path / "store.db"), env=env)
    assert result.returncode == 1
    assert result.stderr.count("the API key was refused; check TAVUS_API_KEY") == 1, result.stderr
    assert "time budget" not in result.stdout + result.stderr
    assert "stopped early by the failure above" in result.stdout
    report = json.loads(cli("reconcile", "--store", sqlite_url(tmp_path / "store.db"), "--json", env=env).stdout)
    assert "the API key was refused" in report["stopped"]


# -- shell completion ---------------------------------------------------------------------------------------

def bash_completes(line: str) -> list[str]:
    """What bash offers for Tab at the end of `line`, with the script `completion bash` prints loaded."""
    words = line.split(" ")
    script = (
        'eval "$("$TAVUS" completion bash)"\n'
        'fn=$(complete -p tavus-callbacks | sed -E "s/.*-F ([^ ]+).*/\\1/")\n'
        f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}\n"
        f"$fn tavus-callbacks {words[-1]!r} {words[-2]!r}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = {**os.environ, "TAVUS": serve_command()[0], "PATH": f"{Path(serve_command()[0]).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize(("line", "offered"), [
    ("tavus-callbacks conv", ["conversations"]),
    ("tavus-callbacks conversations li", ["list"]),
    ("tavus-callbacks conversations list --st", ["--store"]),
    ("tavus-callbacks serve --log-f", ["--log-format"]),
    ("tavus-callbacks completion ", ["--help", "-h", "bash", "fish", "zsh"]),
])
def test_bash_completes_commands_and_their_options(line: str, offered: list[str]) -> None:
    assert sorted(bash_completes(line)) == offered


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_each_shell_gets_a_script_naming_the_command(shell: str) -> None:
    result = cli("completion", shell)
    assert result.returncode == 0 and "tavus-callbacks" in result.stdout and "_ARGCOMPLETE" in result.stdout
    if shutil.which(shell) and shell != "bash":  # the shell parses it
        check = subprocess.run([shell, "-n"], input=result.stdout, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
