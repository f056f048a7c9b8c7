"""`tavus-callbacks repair`: fold conversations again from their events folders (a damaged state, an event whose
derive was dead-lettered, a store written by an older version); one conversation, the recent ones, or all."""

from __future__ import annotations

import argparse
import sys

from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.reconcile.scheduled import parse_since
from tavus_callbacks.settings import DEFAULT_STORE_URL, Settings
from tavus_callbacks.state.index import recent_conversations
from tavus_callbacks.state.repair import RepairSummary, repair, walk


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL",
                        help=f"the store to repair (env TAVUS_STORE_URL; default {DEFAULT_STORE_URL})")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--conversation", metavar="ID", help="only this conversation")
    which.add_argument("--since", metavar="WHEN",
                       help="the conversations active since then (24h, 7d, or an ISO-8601 time), from the time index")
    which.add_argument("--all", action="store_true",
                       help="every conversation in the store (reads the whole store), and the pending/ markers "
                            "older versions left")
    parser.add_argument("--forward", metavar="URL",
                        help="where the old markers' unfinished publishes go (env TAVUS_FORWARD_URL)")


def run(args: argparse.Namespace) -> int:
    """Repair the store; exit 1 when a conversation or marker could not be finished."""
    overrides = {k: v for k, v in (("store_url", args.store), ("forward_url", args.forward)) if v}
    pipeline = Pipeline(Settings.from_env(**overrides))
    markers: list[str] = []
    if args.conversation:
        conversations = [args.conversation]
        markers = [k for k in pipeline.store.iter_keys(f"{pipeline.layout.prefix}{args.conversation}/pending/")]
    elif args.since:
        conversations = recent_conversations(pipeline.store, pipeline.layout, parse_since(args.since))
    else:
        print(f"reading every key of {pipeline.store.url} ...", file=sys.stderr)
        conversations, markers = walk(pipeline.store, pipeline.layout)
        print(f"{len(conversations)} conversations, {len(markers)} old pending markers", file=sys.stderr)
    summary = repair(pipeline, conversations, markers, progress=_progress if args.all else None)
    pipeline.close()
    print(summary.line())
    return 1 if summary.failures else 0


def _progress(summary: RepairSummary) -> None:
    print(f"... {summary.conversations} conversations folded again", file=sys.stderr, flush=True)
