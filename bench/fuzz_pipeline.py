"""Coverage-guided fuzzing of the whole pipeline with atheris: bytes in, Response out, on a SQLite store.

An input is one control byte, an optional header block and the body:

    byte 0   bits 0-1  the token: 0 `?token=`, 1 `Authorization: Bearer`, 2 none, 3 the header block's own
             bits 2-4  the method: POST x4, GET, PUT, HEAD, DELETE
             bit 5     a header block follows, ended by a NUL: lines `name: value` (headers), `?k=v` (query),
                       `/path` (the path)
             bits 6-7  the path: `/`, `/healthz`, `/callbacks/tavus`, or the header block's
    rest     the body

so a corpus file is readable and a crash becomes a regression file (tests/robustness/fuzz_regressions/) as is.
Any exception, any 5xx, an answer outside the contract or a file outside the store is a crash.

    python bench/fuzz_pipeline.py -atheris_runs=200000            # a long run (seeded from the recorded payloads)
    python bench/fuzz_pipeline.py -max_total_time=600 CORPUS_DIR   # libFuzzer options and corpus dirs

It prints libFuzzer's progress, then one line: inputs fuzzed, seconds, and the crash files if any
(under ./fuzz-artifacts/ unless -artifact_prefix= says otherwise).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from tavus_callbacks.http import Request, Response

ROOT = Path(__file__).resolve().parent.parent
RECORDED = (ROOT / "shared" / "tavus_callbacks" / "events" / "samples", ROOT / "tests" / "events")
TOKEN = "fuzz-token-0123456789abcdef"
ROTATED_TOKEN = "fuzz-rotated-0123456789abcdef"
MAX_BODY = 64 * 1024
METHODS = ("POST", "POST", "POST", "POST", "GET", "PUT", "HEAD", "DELETE")
PATHS = ("/", "/api/healthz", "/callbacks/tavus")
CONTRACT = {200, 400, 401, 405, 413}
_EVENT_ID = re.compile(r"[0-9a-f]{64}")
WIPE_EVERY = 2000
_WORKDIR = "TAVUS_FUZZ_WORKDIR"


class ContractBroken(AssertionError):
    """An answer the contract does not allow, for an input the fuzzer made."""


def decode_input(data: bytes) -> Request:
    """The request an input stands for (see the module's docstring)."""
    from tavus_callbacks.http import Request

    if not data:
        return Request("POST", "/", {"token": TOKEN})
    control, rest = data[0], data[1:]
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    path = PATHS[(control >> 6) % len(PATHS)] if control >> 6 < 3 else "/"
    if control & 0x20:
        block, _, rest = rest.partition(b"\x00")
        for line in block.split(b"\n"):
            text = line.decode("utf-8", "surrogateescape")
            if text.startswith("?"):
                key, _, value = text[1:].partition("=")
                query[key] = value
            elif text.startswith("/") and control >> 6 == 3:
                path = text
            elif ":" in text:
                name, _, value = text.partition(":")
                headers[name.strip()] = value.strip()
    auth = control & 0x03
    if auth == 0:
        query["token"] = TOKEN
    elif auth == 1:
        headers["Authorization"] = f"Bearer {ROTATED_TOKEN}"
    method = METHODS[(control >> 2) & 0x07]
    return Request(method, path, query, headers, bytes(rest))


_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def check_key(key: str) -> None:
    """Every object key is made of plain segments: nothing a sender sent can steer it out of its folder."""
    segments = key.split("/")
    bad = [s for s in segments if not _SAFE_SEGMENT.fullmatch(s) or ".." in s]
    if bad or len(segments) < 2:
        raise ContractBroken(f"an unsafe object key was written: {key[:300]!r}")


def check_object(key: str, data: bytes) -> None:
    """A `.json` object must read back as JSON with the same parser the readers use (orjson)."""
    if key.endswith(".json"):
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ContractBroken(f"{key[:200]} was written but cannot be read back: {exc}") from None


class KeyCheckingStore:
    """The real local store, with every key it is asked to write, and every JSON object, checked first."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.url = store.url

    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        check_key(key)
        check_object(key, data)
        created: bool = self.store.create(key, data, content_type)
        return created

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        check_key(key)
        check_object(key, data)
        new: str = self.store.replace(key, data, version, content_type)
        return new

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Target:
    """The pipeline on a fresh SQLite file in `base/store/`, and the checks every answer must pass."""

    def __init__(self, base: Path) -> None:
        from tavus_callbacks.pipeline import Pipeline
        from tavus_callbacks.settings import Settings
        from tavus_callbacks.stores.sqlite import SQLiteStore

        self.base = base
        self.root = base / "store"
        self.pipeline = Pipeline(Settings(tokens=(TOKEN, ROTATED_TOKEN), max_body_bytes=MAX_BODY),
                                 store=KeyCheckingStore(SQLiteStore(self.root / "tavus.db", timeout=1.0)))  # type: ignore[arg-type]
        self.runs = 0

    def __call__(self, data: bytes) -> Response:
        request = decode_input(data)
        response = self.pipeline.handle(request)
        self.check(request, response)
        if response.status == 200 and request.method == "POST":
            again = self.pipeline.handle(request)
            first, second = response.json_body(), again.json_body()
            if again.status != 200 or second.get("status") != "duplicate" or second["event_id"] != first["event_id"]:
                raise ContractBroken(f"the same callback again was not a duplicate of itself: {first} then {second}")
        self.runs += 1
        if self.runs % WIPE_EVERY == 0:
            self.wipe()
        return response

    def check(self, request: Request, response: Response) -> None:
        status = response.status
        if status not in CONTRACT:
            raise ContractBroken(f"status {status} is not in the contract: {response.body[:300]!r}")
        body: Any = response.json_body()
        if not isinstance(body, dict):
            raise ContractBroken(f"the answer is not a JSON object: {response.body[:300]!r}")
        if status == 200 and request.method == "POST":
            if body.get("status") not in ("stored", "duplicate") or not _EVENT_ID.fullmatch(body.get("event_id", "")):
                raise ContractBroken(f"a 200 without status and event_id: {body}")
            if not self._authorized(request):
                raise ContractBroken("a callback without a valid token was accepted")
        elif status == 200 and body != {"status": "ok"}:
            raise ContractBroken(f"a health answer that says more than ok: {body}")
        if status == 401 and body != {"error": "unauthorized"}:
            raise ContractBroken(f"a 401 that says more than unauthorized: {body}")
        if status == 405:
            health = request.path.rstrip("/").endswith("/healthz")
            if response.headers.get("Allow") != ("GET, HEAD, POST" if health else "POST"):
                raise ContractBroken(f"a 405 on {request.path[:100]!r} with Allow: {response.headers.get('Allow')}")
        outside = set(os.listdir(self.base)) - {"store"}
        if outside:
            raise ContractBroken(f"files written outside the store folder: {sorted(outside)}")

    def _authorized(self, request: Request) -> bool:
        from tavus_callbacks.auth import presented_token

        return presented_token(request) in (TOKEN, ROTATED_TOKEN)

    def wipe(self) -> None:
        """Empty the store so a long run does not fill the disk."""
        store = self.pipeline.store
        for key in list(store.iter_keys("")):
            store.delete(key)


def seeds() -> list[bytes]:
    """The recorded payloads, each with the query token, the bearer token, and on another path."""
    out: list[bytes] = []
    for path in sorted((p for d in RECORDED for p in d.glob("*.json")), key=lambda p: p.name):
        body = path.read_bytes()
        out += [b"\x00" + body, b"\x01" + body, b"\x80" + body]
    out += [b"\x10", b"\x40", b"\x02{}", b"\x00[]", b"\x00not json",
            b"\xe0/x/../../etc/passwd\nX-Forwarded-For: 1\n?token=guess\x00{}"]
    return out


def scratch_dir() -> Path:
    """A folder on tmpfs when there is one (fsync there costs nothing), for the store and the seed corpus."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="tavus-fuzz-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))


def quiet_logs() -> None:
    """Format every log record as `serve` would (JSON, redacted) but write it nowhere: the path runs, silently."""
    import logging

    from tavus_callbacks.logs import JsonFormatter, RedactingFilter

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - open for the life of the process
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter((TOKEN, ROTATED_TOKEN)))
    logger = logging.getLogger("tavus_callbacks")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


def fuzz(argv: list[str]) -> None:
    """The fuzzing process: instrument the package, then hand every input to the Target (never returns)."""
    import atheris

    with atheris.instrument_imports(include=["tavus_callbacks"]):
        import tavus_callbacks.pipeline  # noqa: F401  (instrumented for coverage)

    quiet_logs()
    work = Path(os.environ[_WORKDIR])
    target = Target(work / "run")

    def one_input(data: bytes) -> None:
        target(data)

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def libfuzzer_arguments(argv: list[str], work: Path) -> tuple[list[str], list[str]]:
    """libFuzzer's options and corpora from the command line: the seeds as the corpus when none is given, inputs
    up to the body limit, crashes written under fuzz-artifacts/ unless told otherwise."""
    options = [a for a in argv[1:] if a.startswith("-")]
    corpora = [a for a in argv[1:] if not a.startswith("-")]
    if not corpora:
        corpus = work / "corpus"
        corpus.mkdir()
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
        corpora = [str(corpus)]
    if not any(a.startswith("-max_len=") for a in options):
        options.append(f"-max_len={MAX_BODY + 1024}")
    if not any(a.startswith("-artifact_prefix=") for a in options):
        Path("fuzz-artifacts").mkdir(exist_ok=True)
        options.append("-artifact_prefix=fuzz-artifacts/")
    return options, corpora


def follow(child: subprocess.Popen[str]) -> tuple[int, list[str]]:
    """Echo the fuzzer's output; how many inputs it ran and the crash files it wrote."""
    assert child.stderr is not None
    runs, crashes = 0, []
    for line in child.stderr:
        sys.stderr.write(line)
        if progress := re.match(r"#(\d+)\s", line):
            runs = int(progress[1])
        if done := re.match(r"Done (\d+) (?:runs )?in (\d+) second", line):
            runs = int(done[1])
        if written := re.search(r"Test unit written to (\S+)", line):
            crashes.append(written[1])
    return runs, crashes


def main(argv: list[str]) -> int:
    """Run the fuzzer in a child process on a scratch folder (libFuzzer exits without unwinding), then report."""
    if os.environ.get(_WORKDIR):
        fuzz(argv)
        return 0
    work = scratch_dir()
    try:
        (work / "run" / "store").mkdir(parents=True)
        options, corpora = libfuzzer_arguments(argv, work)
        artifacts = next(a.split("=", 1)[1] for a in options if a.startswith("-artifact_prefix="))
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, __file__, *options, *corpora], stderr=subprocess.PIPE,
                                 env={**os.environ, _WORKDIR: str(work)}, text=True, errors="replace")
        runs, crashes = follow(child)
        code = child.wait()
        seconds = time.perf_counter() - started
        verdict = "no crash" if code == 0 and not crashes else f"CRASH (exit {code}) -> {crashes or artifacts}"
        print(f"fuzz_pipeline: {runs} inputs fuzzed in {seconds:.1f} s ({runs / seconds:.0f}/s); {verdict}",
              flush=True)
        return code
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
