"""The `tavus-callbacks` command: a table of subcommands, each a module with `add_arguments(parser)` and
`run(args) -> int`, loaded only when it is the one being run (so `--help` loads no cloud SDK)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple

from tavus_callbacks import __version__
from tavus_callbacks.errors import TavusCallbacksError

EXIT_USAGE = 2


class Command(NamedTuple):
    name: str  # its module is cli/<name with - as _>.py
    help: str


COMMANDS = [
    Command("serve", "run the callback endpoint as a local HTTP server"),
    Command("send", "post realistic sample callbacks to an endpoint, as Tavus would"),
    Command("conversations", "list stored conversations or show one's state and timeline"),
    Command("schema", "print the JSON Schema of the normalized events"),
    Command("doctor", "check a store and the vendor's S3 writer role, one line per check"),
    Command("recording-storage", "print the recording_storage JSON for a create-conversation call"),
    Command("replay", "re-send stored events in time order to an endpoint or a bus"),
    Command("openapi", "print the endpoint's OpenAPI 3.1 document (--yaml for YAML)"),
    Command("repair", "fold conversations again from their stored events (one, --since 24h, or --all)"),
    Command("export", "write a store's objects to a folder as plain files (bucket layout)"),
    Command("build", "make the self-contained folder a cloud's deploy tool uploads"),
    Command("deploy", "create or update a deployment on Google Cloud or Azure and print its callback URL"),
    Command("outputs", "print a deployed AWS stack's callback URL (token included) and recording_storage JSON"),
    Command("reconcile", "recover callbacks the store missed from the vendor's API (key from TAVUS_API_KEY)"),
]


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The top-level parser, with the options of only the subcommand named in `argv` loaded."""
    parser = argparse.ArgumentParser(
        prog="tavus-callbacks", description="Receive Tavus callbacks: authenticated, normalized, stored exactly once.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        if command.name == chosen:
            module = importlib.import_module(f"{__name__}.{command.name.replace('-', '_')}")
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a TavusCallbacksError prints `error: <message>` and exits 2, without a traceback."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    runner = getattr(args, "_run", None)
    if runner is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = runner(args)
    except TavusCallbacksError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code
