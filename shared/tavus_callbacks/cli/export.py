"""`tavus-callbacks export`: a store's objects written out as plain files in the bucket layout, to read the
SQLite store with ordinary tools or take a bucket's events offline."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tavus_callbacks.errors import ConfigError
from tavus_callbacks.settings import DEFAULT_STORE_URL
from tavus_callbacks.stores import Store, open_store


def export(store: Store, to: Path, under: str = "") -> tuple[int, list[str]]:
    """Write every object whose key starts with `under` to `to/<key>`; (files written, keys left out: those
    that cannot be a relative file path, with an empty, `.` or `..` segment or a backslash)."""
    written, left_out = 0, []
    for key in store.iter_keys(under):
        parts = key.split("/")
        if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
            left_out.append(key)
            continue
        blob = store.read(key)
        if blob is None:  # deleted since it was listed
            continue
        target = to.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.data)
        written += 1
    return written, left_out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL",
                        help=f"the store to read (env TAVUS_STORE_URL; default {DEFAULT_STORE_URL})")
    parser.add_argument("--to", metavar="DIR", required=True, help="the folder to write the files into")
    parser.add_argument("--conversation", metavar="ID", help="only this conversation's folder")


def run(args: argparse.Namespace) -> int:
    """Export, print how many files were written; exit 1 when some keys could not be written as files."""
    conversation = args.conversation
    if conversation is not None and (not conversation or "/" in conversation or conversation in (".", "..")):
        raise ConfigError(f"--conversation {conversation!r} is not a conversation id (e.g. c123456)")
    store, prefix = open_store(args.store or os.environ.get("TAVUS_STORE_URL", "").strip() or DEFAULT_STORE_URL)
    to = Path(args.to)
    written, left_out = export(store, to, f"{prefix}{conversation}/" if conversation else prefix)
    print(f"wrote {written} files from {store.url} to {to}")
    for key in left_out:
        print(f"left out {key!r}: not a safe file path", file=sys.stderr)
    return 1 if left_out else 0
