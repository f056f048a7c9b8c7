"""`tavus-callbacks repair`: finish the derived work left pending in a store."""

from __future__ import annotations

import argparse

from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import DEFAULT_STORE_URL, Settings
from tavus_callbacks.state.repair import repair


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL",
                        help=f"the store to repair (env TAVUS_STORE_URL; default {DEFAULT_STORE_URL})")
    parser.add_argument("--conversation", metavar="ID", help="only this conversation")
    parser.add_argument("--forward", metavar="URL",
                        help="the bus pending publishes go to (env TAVUS_FORWARD_URL)")


def run(args: argparse.Namespace) -> int:
    """Repair the store; exit 1 when some pending work could not be finished."""
    overrides = {k: v for k, v in (("store_url", args.store), ("forward_url", args.forward)) if v}
    summary = repair(Pipeline(Settings.from_env(**overrides)), args.conversation)
    print(summary.line())
    return 1 if summary.failures else 0
