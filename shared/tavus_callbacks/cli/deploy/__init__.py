"""`tavus-callbacks deploy gcp|azure`: one idempotent command from a logged-in cloud CLI to a callback URL.

A Python command rather than a shell script: it parses each CLI's JSON instead of scraping text, keeps the
token off every command line, runs the same on Windows (where the Azure CLI is common), and reuses `build`.
"""

from __future__ import annotations

import argparse
import importlib

CLOUDS = ("gcp", "azure")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cloud", required=True)
    for cloud, text in (("gcp", "Google Cloud Functions (gen2) with a GCS bucket and Secret Manager"),
                        ("azure", "Azure Functions (Flex Consumption) with Blob storage and Key Vault")):
        cloud_parser = sub.add_parser(cloud, help=text, description=text)
        importlib.import_module(f"{__name__}.{cloud}").add_arguments(cloud_parser)
        cloud_parser.add_argument("--settings", metavar="FILE",
                                  help=f"where the names are kept between runs (default: .tavus-deploy-{cloud}.env)")
        cloud_parser.add_argument("--out", default="build", metavar="DIR",
                                  help="parent folder of the bundle that is uploaded (default: build)")
        cloud_parser.add_argument("--wait", type=float, default=300, metavar="SECONDS",
                                  help="how long to wait for roles to propagate before giving up (default: 300)")


def run(args: argparse.Namespace) -> int:
    """Deploy to the chosen cloud and print the callback URL."""
    args.settings = args.settings or f".tavus-deploy-{args.cloud}.env"
    code: int = importlib.import_module(f"{__name__}.{args.cloud}").run(args)
    return code
