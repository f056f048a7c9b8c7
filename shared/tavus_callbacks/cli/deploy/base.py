"""What the deploy commands share: running a platform CLI, names that persist, the first check of the endpoint.
A secret never goes on a command line (the process list shows it): it goes on stdin or in a private file."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from tavus_callbacks.errors import TavusCallbacksError

# The one callback a deploy sends: of no known family, kept under unrecognized/undated/ (a second deploy: duplicate)
DEPLOY_CHECK = b'{"tavus_callbacks_deploy_check": 1}'
T = TypeVar("T")
NOT_FOUND = ("NOT_FOUND", "NotFound", "not found", "ResourceNotFound", "could not be found")


class DeployError(TavusCallbacksError):
    """A deploy step failed; the message says which command and what to do."""


def add_names(parser: argparse.ArgumentParser, helps: Mapping[str, str]) -> None:
    """A flag per entry, with its help: the flags naming a resource, which the settings file keeps when not given."""
    for flag, text in helps.items():
        parser.add_argument(flag, help=text)


@dataclass
class Cli:
    """Runs one platform CLI (gcloud, az, func), echoing each command line to stderr."""

    program: str
    install_hint: str

    def __post_init__(self) -> None:
        if shutil.which(self.program) is None:
            raise DeployError(f"`{self.program}` is not on PATH: {self.install_hint}")

    def run(self, *argv: str, stdin: str | None = None, cwd: Path | None = None,
            missing: tuple[str, ...] = ()) -> str | None:
        """The command's stdout; None when it fails saying one of `missing`; else a DeployError with its stderr."""
        log(f"$ {self.program} {shlex.join(argv)}")
        executable = shutil.which(self.program) or self.program  # a .cmd on Windows needs its full name
        done = subprocess.run([executable, *argv], input=stdin, cwd=cwd, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return done.stdout
        if any(word.lower() in done.stderr.lower() for word in missing):
            return None
        said = done.stderr.strip()[-2000:] or done.stdout.strip()[-2000:]
        raise DeployError(f"`{self.program} {shlex.join(argv)}` failed ({done.returncode}): {said}")

    def json(self, *argv: str) -> Any:
        """The command's stdout parsed as JSON (None when it printed nothing)."""
        return self.maybe_json(*argv, missing=())

    def maybe_json(self, *argv: str, missing: tuple[str, ...] = NOT_FOUND) -> Any:
        """The JSON of a describe/show command, or None when it says the resource does not exist."""
        text = (self.run(*argv, missing=missing) or "").strip()
        return json.loads(text) if text else None


class SettingsFile:
    """Resource names in a small KEY=VALUE file, so that a second run reuses what the first one created."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.lstrip().startswith("#"):
                    self.values[key.strip()] = value.strip()

    def pick(self, key: str, given: str | None, default: Callable[[], str | None] = lambda: None) -> str:
        """`given` if given (even empty), else what the file holds, else the default or ""; kept for save()."""
        value = given if given is not None else self.values.get(key) or default() or ""
        self.values[key] = value
        return value

    def save(self, header: str) -> None:
        lines = [f"# {header}", *(f"{k}={v}" for k, v in self.values.items())]
        self.path.write_text("\n".join(lines) + "\n")


@contextmanager
def private_file(content: str, suffix: str = "") -> Iterator[Path]:
    """A file only this user can read, holding `content`, removed when the block ends."""
    fd, name = tempfile.mkstemp(prefix="tavus-deploy-", suffix=suffix)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _status(url: str, data: bytes | None = None) -> int:
    """The status of a GET (or, with data, a JSON POST), 0 when nothing answers."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers={
                "Content-Type": "application/json"}), timeout=20) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def wait_interval(wait: float) -> float:
    """How long to sleep between tries when `wait` seconds are allowed in all."""
    return max(0.2, min(10.0, wait / 30))


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_endpoint(url: str, token: str, *, wait: float) -> None:
    """GET <url>healthz, then one authenticated callback, retried while the answer is 5xx (roles and secret
    references take minutes to propagate) for up to `wait` seconds; a DeployError says what is still wrong."""
    base = url if url.endswith("/") else url + "/"
    deadline = time.monotonic() + wait

    def poll(target: str, data: bytes | None, done: tuple[int, ...], waiting: str) -> int:
        while (status := _status(target, data)) not in done and time.monotonic() < deadline:
            if waiting:
                log(f"  a test callback answered {status or 'nothing'}; {waiting}")
            time.sleep(wait_interval(wait))
        return status

    status = poll(base + "healthz", None, (200,), "")
    if status != 200:
        raise DeployError(f"GET {base}healthz answered {status or 'nothing'}: the function did not start; "
                          "read its logs")
    log(f"health check: GET {base}healthz -> 200")
    status = poll(f"{base}?token={quote(token, safe='')}", DEPLOY_CHECK, (200, 401),
                  "waiting for the roles to propagate")
    if status == 401:
        raise DeployError("the function refused the token from the secret (401): it runs with another token; "
                          "deploy again so that it reads the current secret")
    if status != 200:
        raise DeployError(f"a test callback still answered {status or 'nothing'} after {wait:.0f} s: the "
                          "function's logs say why (a role not yet granted, or a secret it cannot read); run the "
                          "same deploy command again, it only redoes what is missing")
    log("test callback stored (under unrecognized/undated/ in the bucket)")


def retrying(step: Callable[[], T], words: tuple[str, ...], waiting: str, *, wait: float) -> T:
    """What `step` returns, run again while it fails saying one of `words` (a role or a resource that takes a
    while to propagate), saying `waiting` each time, for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return step()
        except DeployError as exc:
            if not any(w.lower() in str(exc).lower() for w in words) or time.monotonic() > deadline:
                raise
            log(f"  {waiting}; waiting")
            time.sleep(wait_interval(wait))


def print_urls(url: str, token: str, store: str, forward: str, signing: str) -> None:
    """What a deploy prints on stdout: the callback URL, the store and, with a webhook, its URL and secret."""
    print(f"callback_url: {url}?token={token}")
    print(f"store_url:    {store}")
    if signing:
        print(f"webhook_url:    {forward}")
        print(f"webhook_secret: {signing}  (give it to the receiver; it signs every delivery)")
