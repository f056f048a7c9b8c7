"""What the deploy commands share: running a platform CLI, names that persist, and the first check of the endpoint.

A secret never goes on a command line (the process list and shell history show those): it goes on stdin or in
a private file that is removed at once.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tavus_callbacks.errors import TavusCallbacksError

# The body of the one callback a deploy sends: of no known family, so it is kept under unrecognized/undated/,
# the same object on every run (a second deploy gets `duplicate`).
DEPLOY_CHECK = b'{"tavus_callbacks_deploy_check": 1}'


class DeployError(TavusCallbacksError):
    """A deploy step failed; the message says which command and what to do."""


@dataclass
class Cli:
    """Runs one platform CLI (gcloud, az, func), echoing each command line to stderr."""

    program: str
    install_hint: str

    def __post_init__(self) -> None:
        if shutil.which(self.program) is None:
            raise DeployError(f"`{self.program}` is not on PATH: {self.install_hint}")

    def run(self, *argv: str, stdin: str | None = None, cwd: Path | None = None) -> str:
        """The command's stdout; a DeployError carrying its stderr when it fails."""
        done = self._call(argv, stdin, cwd)
        if done.returncode != 0:
            raise self._failed(argv, done)
        return done.stdout

    def json(self, *argv: str) -> Any:
        """The command's stdout parsed as JSON (None when it printed nothing)."""
        text = self.run(*argv).strip()
        return json.loads(text) if text else None

    def maybe_json(self, *argv: str, missing: tuple[str, ...] = ("NOT_FOUND", "NotFound", "not found",
                                                                  "ResourceNotFound", "could not be found")) -> Any:
        """The JSON of a describe/show command, or None when it says the resource does not exist."""
        done = self._call(argv, None, None)
        if done.returncode == 0:
            text = done.stdout.strip()
            return json.loads(text) if text else None
        if any(word.lower() in done.stderr.lower() for word in missing):
            return None
        raise self._failed(argv, done)

    def _failed(self, argv: tuple[str, ...], done: subprocess.CompletedProcess[str]) -> DeployError:
        said = done.stderr.strip()[-2000:] or done.stdout.strip()[-2000:]
        return DeployError(f"`{self.program} {shlex.join(argv)}` failed ({done.returncode}): {said}")

    def _call(self, argv: tuple[str, ...], stdin: str | None, cwd: Path | None) -> subprocess.CompletedProcess[str]:
        print(f"$ {self.program} {shlex.join(argv)}", file=sys.stderr, flush=True)
        executable = shutil.which(self.program) or self.program  # a .cmd on Windows needs its full name
        return subprocess.run([executable, *argv], input=stdin, cwd=cwd, capture_output=True, text=True,
                              check=False)


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

    def pick(self, key: str, given: str | None, default: Callable[[], str | None] | None = None) -> str | None:
        """`given` if set, else what the file holds, else the default; remembered for save()."""
        value = given or self.values.get(key) or (default() if default else None)
        if value:
            self.values[key] = value
        return value

    def save(self, header: str) -> None:
        lines = [f"# {header}", *(f"{k}={v}" for k, v in self.values.items())]
        self.path.write_text("\n".join(lines) + "\n")


def new_token() -> str:
    """A fresh callback token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


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


def _request(url: str, data: bytes | None, timeout: float) -> int:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def check_endpoint(url: str, token: str, *, wait: float, log: Callable[[str], None]) -> None:
    """GET <url>healthz, then one authenticated callback, retried while the answer is 5xx (roles and secret
    references take minutes to propagate) for up to `wait` seconds; a DeployError says what is still wrong."""
    base = url if url.endswith("/") else url + "/"
    interval = max(0.2, min(10.0, wait / 30))
    deadline = time.monotonic() + wait
    status = _request(base + "healthz", None, 10)
    while status != 200 and time.monotonic() < deadline:
        time.sleep(interval)
        status = _request(base + "healthz", None, 10)
    if status != 200:
        raise DeployError(f"GET {base}healthz answered {status or 'nothing'}: the function did not start; "
                          "read its logs")
    log(f"health check: GET {base}healthz -> 200")
    target = f"{base}?token={quote(token, safe='')}"
    status = _request(target, DEPLOY_CHECK, 20)
    while status not in (200, 401) and time.monotonic() < deadline:
        log(f"  a test callback answered {status or 'nothing'}; waiting for the roles to propagate")
        time.sleep(interval)
        status = _request(target, DEPLOY_CHECK, 20)
    if status == 401:
        raise DeployError("the function refused the token from the secret (401): it runs with another token; "
                          "deploy again so that it reads the current secret")
    if status != 200:
        raise DeployError(f"a test callback still answered {status or 'nothing'} after {wait:.0f} s: the "
                          "function's logs say why (a role not yet granted, or a secret it cannot read); run the "
                          "same deploy command again, it only redoes what is missing")
    log("test callback stored (under unrecognized/undated/ in the bucket)")
