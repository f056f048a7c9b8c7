"""Every command fed bad arguments (hypothesis): whatever is drawn, the command ends with a status of 0, 1 or 2
and at most a short message, never a traceback nor the message of an unexpected error.

The commands run in this process, in a scratch folder, with every network address but the loopback refused
and the cloud SDKs pointed at a port where nothing listens; `serve` stops short of running its server.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.servers import free_port
from tavus_callbacks.cli import COMMANDS, EXIT_USAGE, build_parser, main

BAD_VALUES = [
    "", " ", "-", "--", "-1", "0", "1e309", "nan", "inf", "99999999999999999999", "3.5", "x" * 300, "é☃", "\t",
    "../x", "/", ".", "/proc/x", "/dev/null", "ftp://x", "sqlite:x.db", "sqlite://", "sqlite:///", "sqlite:///:memory:",
    "sqlite:////proc/x.db", "sqlite:///a.db?mode=rw", "s3://", "gs://", "azure://", "https://x.blob.core.windows.net",
    "file:///tmp/tavus-data", "http://127.0.0.1:9/", "http://[::1", "eventbridge://", "pubsub://x", "eventgrid://",
    "kafka://x", "c123", "c 1", "{}", "[", "2025-13-45", "72h", "-5d", "yesterday", "bash", "gcp", "aws", "list",
    "show", "replica_joined", "--help", "-V", "arn:aws:iam::123456789012:role/R", "<your-token>",
    "replace-with-a-token-of-at-least-16-characters",
]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()}


def command_parser(command: str) -> argparse.ArgumentParser:
    return _subparsers(build_parser([command]))[command]


junk = st.one_of(st.sampled_from(BAD_VALUES),
                 st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12))


def arguments(parser: argparse.ArgumentParser) -> st.SearchStrategy[list[str]]:
    """Words for one parser: its positionals (a choice, or a bad value), then some of its options, each with a
    bad value when it takes one, and now and then a stray word; a nested action recurses into its parser."""
    positionals = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    nested = _subparsers(parser)

    def value(action: argparse.Action) -> st.SearchStrategy[list[str]]:
        choices = [str(c) for c in action.choices] if action.choices else []
        one = st.one_of(st.sampled_from(choices), junk) if choices else junk
        return st.lists(one, min_size=1, max_size=2) if action.nargs in ("*", "+") else one.map(lambda v: [v])

    def option(action: argparse.Action) -> st.SearchStrategy[list[str]]:
        flag = st.sampled_from(action.option_strings)
        if action.nargs == 0:
            return flag.map(lambda f: [f])
        return st.tuples(flag, value(action)).map(lambda pair: [pair[0], *pair[1]])

    parts: list[st.SearchStrategy[list[str]]] = [value(a) for a in positionals]
    if nested:
        parts.insert(0, st.sampled_from(sorted(nested)).flatmap(lambda name: arguments(nested[name]).map(
            lambda words: [name, *words])))
    if options:
        parts.append(st.lists(st.sampled_from(options).flatmap(option), max_size=4).map(
            lambda groups: [w for g in groups for w in g]))
    parts.append(st.lists(junk, max_size=1))
    return st.tuples(*parts).map(lambda groups: [w for g in groups for w in g])


PARSERS = {c.name: command_parser(c.name) for c in COMMANDS}


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(sorted(PARSERS)))
    return [command, *draw(arguments(PARSERS[command]))]


@contextlib.contextmanager
def contained(tmp: Path) -> Iterator[None]:
    """The scratch folder, a network of the loopback only, dead endpoints for every SDK, no CLI on PATH, no
    server started; the logging configuration put back afterwards."""
    dead = f"127.0.0.1:{free_port()}"
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1", None):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (the test allows the loopback only)")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            raise ConnectionRefusedError(111, "only the loopback is reachable in this test")
        real_connect(self, address)

    loggers = {name: logging.getLogger(name) for name in ("tavus_callbacks", "uvicorn")}
    saved = {name: (list(lg.handlers), lg.level, lg.propagate) for name, lg in loggers.items()}
    env = {"PATH": str(tmp / "no-tools"), "AWS_ENDPOINT_URL": f"http://{dead}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "STORAGE_EMULATOR_HOST": f"http://{dead}", "NO_GCE_CHECK": "True", "GCE_METADATA_HOST": dead,
           "GCE_METADATA_IP": dead, "AZURE_STORAGE_CONNECTION_STRING":
               f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;BlobEndpoint=http://{dead}/a;"}
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(("TAVUS_", "AWS_", "AZURE_", "GOOGLE_"))]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        patch.chdir(tmp)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr("tavus_callbacks.cli.serve.serve", lambda settings, options: None)
        patch.setattr("tavus_callbacks.cli.inspect.run_server", lambda server, listener: listener.close())
        try:
            yield
        finally:
            for name, (handlers, level, propagate) in saved.items():
                loggers[name].handlers[:] = handlers
                loggers[name].setLevel(level)
                loggers[name].propagate = propagate


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(argv=command_lines())
def test_no_arguments_make_a_command_print_a_traceback(argv: list[str], tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contained(tmp_path), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: Any = main(argv)
        except SystemExit as exit:  # argparse: --help, --version, or a usage error
            code = exit.code
    said = err.getvalue()
    assert code in (0, 1, EXIT_USAGE), (argv, code, said)
    assert "Traceback" not in said + out.getvalue(), (argv, said)
    assert "unexpected" not in said, (argv, said)
    if code == EXIT_USAGE:
        assert said.startswith("error: ") or "\nerror: " in said, (argv, said)
