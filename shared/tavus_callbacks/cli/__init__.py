"""The `tavus-callbacks` command: a table of subcommands, each loaded only when it is the one being run.

A subcommand is a module with `add_arguments(parser)` and `run(args) -> int`; registering one is a
line in COMMANDS, so `tavus-callbacks --help` stays fast and no cloud SDK loads unless it is needed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from tavus_callbacks import __version__
from tavus_callbacks.errors import TavusCallbacksError

EXIT_USAGE = 2


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: its name, the module that implements it, and one line of help."""

    name: str
    module: str
    help: str


COMMANDS: list[Command] = [
    Command("serve", "tavus_callbacks.cli.serve",
            "run the callback endpoint as a local HTTP server"),
    Command("send", "tavus_callbacks.cli.send",
            "post realistic sample callbacks to an endpoint, as Tavus would"),
    Command("conversations", "tavus_callbacks.cli.conversations",
            "list stored conversations or show one's state and timeline"),
    Command("schema", "tavus_callbacks.cli.schema", "print the JSON Schema of the normalized events"),
    Command("doctor", "tavus_callbacks.cli.doctor",
            "check a store and the vendor's S3 writer role, one line per check"),
    Command("recording-storage", "tavus_callbacks.cli.recording_storage",
            "print the recording_storage JSON for a create-conversation call"),
    Command("replay", "tavus_callbacks.cli.replay",
            "re-send stored events in time order to an endpoint or a bus"),
    Command("openapi", "tavus_callbacks.cli.openapi",
            "print the endpoint's OpenAPI 3.1 document (--yaml for YAML)"),
    Command("repair", "tavus_callbacks.cli.repair",
            "finish pending work: fold stored events missing from their conversation, publish what is unpublished"),
    Command("export", "tavus_callbacks.cli.export",
            "write a store's objects to a folder as plain files (bucket layout)"),
    Command("build", "tavus_callbacks.cli.build",
            "make the self-contained folder a cloud's deploy tool uploads"),
    Command("deploy", "tavus_callbacks.cli.deploy",
            "create or update a deployment on Google Cloud or Azure and print its callback URL"),
    Command("outputs", "tavus_callbacks.cli.outputs",
            "print a deployed AWS stack's callback URL (token included) and recording_storage JSON"),
    Command("reconcile", "tavus_callbacks.cli.reconcile",
            "recover callbacks the store missed from the vendor's API (key from TAVUS_API_KEY)"),
]


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The top-level parser, with the options of only the subcommand named in `argv` loaded."""
    parser = argparse.ArgumentParser(
        prog="tavus-callbacks",
        description="Receive Tavus callbacks: authenticated, normalized, stored exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        if command.name == chosen:
            module = _load(command)
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
    return parser


def _load(command: Command) -> ModuleType:
    module = importlib.import_module(command.module)
    if not (callable(getattr(module, "add_arguments", None)) and callable(getattr(module, "run", None))):
        raise TypeError(f"{command.module} must define add_arguments(parser) and run(args) for `{command.name}`")
    return module


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


if __name__ == "__main__":
    sys.exit(main())
