"""`tavus-callbacks schema`: the JSON Schema of the normalized events."""

from __future__ import annotations

import argparse
import json

from tavus_callbacks.events.schema import json_schema


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`schema` takes no options."""


def run(args: argparse.Namespace) -> int:
    """`schema`: the JSON Schema of the normalized events, on stdout."""
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0
