"""The `tavus-callbacks` command: a table of subcommands, each a module with `add_arguments(parser)` and
`run(args) -> int`, loaded only when it is the one being run (so `--help` loads no cloud SDK).

Whatever a user gets wrong ends in one or two lines on stderr that name the fix, never a traceback: exit 2
for a usage or configuration mistake, 1 for a failure (a store, bus, endpoint or API that failed), 130 on
Ctrl-C, and 141 (as for any command a shell sees killed by SIGPIPE) when the reader of stdout went away,
e.g. `| head -1`. TAVUS_DEBUG=1 lets an unexpected error show its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import IO, NamedTuple, NoReturn

from tavus_callbacks import __version__
from tavus_callbacks.console import configure_cli_logging
from tavus_callbacks.errors import TavusCallbacksError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
DEBUG_VAR = "TAVUS_DEBUG"


class Command(NamedTuple):
    name: str  # its module is cli/<name with - as _>.py
    help: str


COMMANDS = [
    Command("serve", "run the callback endpoint as a local HTTP server"),
    Command("send", "post realistic sample callbacks to an endpoint, as Tavus would"),
    Command("conversations", "list stored conversations or show one's state and timeline"),
    Command("inspect", "open the page that shows a store's callbacks and conversations, read-only"),
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
    Command("completion", "print the shell completion script for bash, zsh or fish"),
]


class Parser(argparse.ArgumentParser):
    """argparse with a usage mistake said in two lines: what is wrong, then the usage (or where to find it)."""

    def error(self, message: str) -> NoReturn:
        usage = self.format_usage().strip()
        hint = usage if "\n" not in usage and len(usage) <= 120 else f"see `{self.prog} --help`"
        self.exit(EXIT_USAGE, f"error: {message}\n{hint}\n")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The top-level parser, with the options of only the subcommand named in `argv` loaded."""
    parser = Parser(prog="tavus-callbacks",
                    description="Receive Tavus callbacks: authenticated, normalized, stored exactly once.",
                    epilog="Shell completion: `tavus-callbacks completion --help`. Exit status: 0 done, 1 a "
                           "failure, 2 a usage or configuration mistake.")
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
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
    """Run one subcommand and return its exit status; no mistake of the user's ends in a traceback."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if "_ARGCOMPLETE" in os.environ:
        _complete()
    try:
        code = _run(args_list)
        sys.stdout.flush()  # a reader gone by now is seen here, not at exit
        return code
    except BrokenPipeError:
        _detach(sys.stdout)
        return EXIT_BROKEN_PIPE


def _run(args_list: list[str]) -> int:
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    runner = getattr(args, "_run", None)
    if runner is None:
        print(parser.format_usage().strip(), file=sys.stderr)
        print(f"error: name a COMMAND ({', '.join(c.name for c in COMMANDS)}); "
              "`tavus-callbacks --help` says what each does", file=sys.stderr)
        return EXIT_USAGE
    configure_cli_logging()
    try:
        code: int = runner(args)
    except TavusCallbacksError as exc:  # ConfigError and the like: 2; Failed (a store, a bus, an endpoint): 1
        return _fail(exc.exit_status, str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except OSError as exc:  # a file or folder the user named: the system's reason says what to fix
        where = f" {exc.filename}" if exc.filename else ""
        return _fail(EXIT_FAILURE, f"cannot use{where}: {exc.strerror or exc}; check the path and that it may be "
                                   "written (or read) by you")
    except Exception as exc:
        if os.environ.get(DEBUG_VAR):
            raise
        return _fail(EXIT_FAILURE, f"unexpected {type(exc).__name__}: {exc}; this is a bug of tavus-callbacks, "
                                   f"please report it ({DEBUG_VAR}=1 shows where it happened)")
    return code


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _detach(stream: IO[str]) -> None:
    """Point a closed stream at /dev/null, so the interpreter's last flush at exit finds nothing to complain of."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):  # not a real file (a test's capture): nothing is flushed at exit
        pass


def _complete() -> None:
    """Answer a shell's completion request (argcomplete's protocol), with the options of the command on the line."""
    try:
        import argcomplete
    except ImportError:
        return
    words = os.environ.get("COMP_LINE", "").split()[1:]
    argcomplete.autocomplete(build_parser(words))
