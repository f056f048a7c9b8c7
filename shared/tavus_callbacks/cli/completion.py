"""`tavus-callbacks completion bash|zsh|fish`: the shell's completion script for the command, made by argcomplete
(which then answers each Tab from the same parsers the command uses, so every command and option completes)."""

from __future__ import annotations

import argparse

from tavus_callbacks.errors import MissingDependency

SHELLS = ("bash", "zsh", "fish")
INSTALL = {
    "bash": 'eval "$(tavus-callbacks completion bash)"    # in ~/.bashrc',
    "zsh": 'eval "$(tavus-callbacks completion zsh)"     # in ~/.zshrc, after compinit',
    "fish": "tavus-callbacks completion fish | source    # in ~/.config/fish/config.fish",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "Load it at each shell's start:\n  " + "\n  ".join(INSTALL.values())
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def run(args: argparse.Namespace) -> int:
    """Print the script; the shell evaluates it."""
    try:
        from argcomplete.shell_integration import shellcode
    except ImportError:
        raise MissingDependency("shell completion needs argcomplete, which is not installed: pip install "
                                "argcomplete (or, from the project's folder, pip install -e .)") from None
    print(shellcode(["tavus-callbacks"], shell=args.shell), end="")
    return 0
