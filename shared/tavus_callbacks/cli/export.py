"""`tavus-callbacks export`: a store's objects written out as plain files in the bucket layout, to read the
SQLite store with ordinary tools or take a bucket's events offline. It only reads the store.

A bucket may hold objects that cannot be files here (a name over the file system's limit, a key that is both a
file and a folder, `..`): each is skipped with a line naming its key and why, the export goes on, and the
summary and exit status (1) say how many.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from tavus_callbacks.errors import ConfigError, StoreUnavailable
from tavus_callbacks.settings import DEFAULT_STORE_URL
from tavus_callbacks.state.stored import Skipped
from tavus_callbacks.stores import Store, open_store

log = logging.getLogger("tavus_callbacks")

_WHY = {
    errno.ENAMETOOLONG: "its name is longer than the file system allows",
    errno.ENOTDIR: "a folder of its path is already a file (another key names that file)",
    errno.EEXIST: "a folder of its path is already a file (another key names that file)",
    errno.EISDIR: "its path is already a folder (other keys lie under it)",
}


@dataclass
class Exported:
    """What an export did: files written, and the objects skipped with why."""

    written: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def export(store: Store, to: Path, under: str = "") -> Exported:
    """Write every object whose key starts with `under` to `to/<key>`, skipping (and logging) each object that
    cannot be read or cannot be a file there; never stops at one."""
    done = Exported()

    def skip(key: str, why: str) -> None:
        shown = key if len(key) <= 200 else f"{key[:200]}... ({len(key.encode())} bytes)"
        log.warning("skipped %r: %s", shown, why, extra={"skipped": key, "why": why})
        done.skipped.append(Skipped(key, why))

    for key in store.iter_keys(under):
        parts = key.split("/")
        if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
            skip(key, "not a safe file path (an empty, `.` or `..` segment, a backslash or a NUL)")
            continue
        try:
            blob = store.read(key)
        except StoreUnavailable as exc:
            skip(key, f"could not be read: {exc}")
            continue
        if blob is None:  # deleted since it was listed
            continue
        target = to.joinpath(*parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob.data)
        except OSError as exc:
            skip(key, _WHY.get(exc.errno or 0, exc.strerror or str(exc)))
            continue
        done.written += 1
    return done


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL",
                        help=f"the store to read (env TAVUS_STORE_URL; default {DEFAULT_STORE_URL})")
    parser.add_argument("--to", metavar="DIR", required=True, help="the folder to write the files into")
    parser.add_argument("--conversation", metavar="ID", help="only this conversation's folder")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: store, to, written (files), skipped ([{key, why}])")


def run(args: argparse.Namespace) -> int:
    """Export, print how many files were written; exit 1 when some objects were skipped."""
    conversation = args.conversation
    if conversation is not None and (not conversation or "/" in conversation or conversation in (".", "..")):
        raise ConfigError(f"--conversation {conversation!r} is not a conversation id (e.g. c123456)")
    store, prefix = open_store(args.store or os.environ.get("TAVUS_STORE_URL", "").strip() or DEFAULT_STORE_URL,
                               read_only=True)
    to = Path(args.to)
    _check_folder(to)
    done = export(store, to, f"{prefix}{conversation}/" if conversation else prefix)
    if args.json:
        print(json.dumps({"store": store.url, "to": str(to), "written": done.written,
                          "skipped": [{"key": s.key, "why": s.why} for s in done.skipped]}, indent=2))
    else:
        skipped = f"; {len(done.skipped)} objects skipped (each named above)" if done.skipped else ""
        print(f"wrote {done.written} files from {store.url} to {to}{skipped}")
    return 1 if done.skipped else 0


def _check_folder(to: Path) -> None:
    """Make the folder, or a ConfigError naming why it cannot be written to."""
    try:
        to.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"--to {to}: it is a file, not a folder; choose a folder (it is made when missing)") \
            from None
    except OSError as exc:
        raise ConfigError(f"--to {to}: cannot make the folder ({exc.strerror or exc}); choose a folder you can "
                          "write to") from None
    if not os.access(to, os.W_OK | os.X_OK):
        raise ConfigError(f"--to {to}: the folder is not writable; choose a folder you can write to")
