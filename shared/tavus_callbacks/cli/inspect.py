"""`tavus-callbacks inspect`: the inspector's page (the one `serve` offers at /_/) on any store, read-only.

The store is opened without creating anything and read through a view that refuses writes; the page asks for
a token like `serve`'s does (a fresh one per run unless --token or TAVUS_CALLBACK_TOKENS gives one).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from datetime import UTC, datetime, timedelta

import uvicorn

from tavus_callbacks.console import configure_logging
from tavus_callbacks.errors import ConfigError
from tavus_callbacks.inspector.app import ROOT, InspectorApp, standalone
from tavus_callbacks.inspector.reading import Reader, open_read_only
from tavus_callbacks.layout import Layout
from tavus_callbacks.reconcile.scheduled import parse_since
from tavus_callbacks.settings import DEFAULT_STORE_URL, parse_tokens
from tavus_callbacks.state.stored import parse_time

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081  # beside serve's 8080
DEFAULT_LIMIT = 100
DEFAULT_SINCE = "7d"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    option = parser.add_argument
    option("--store", metavar="URL", default=os.environ.get("TAVUS_STORE_URL", "").strip() or DEFAULT_STORE_URL,
           help=f"the store to look at: sqlite:///file.db, s3://..., gs://..., azure://... (env TAVUS_STORE_URL; "
                f"default {DEFAULT_STORE_URL}); only read, never written")
    option("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    option("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT}; 0: any free)")
    option("--token", action="append", metavar="TOKEN",
           help="the token the page asks for; repeat or comma-separate for several (env TAVUS_CALLBACK_TOKENS; "
                "default: a new random token, printed once)")
    option("--since", metavar="WHEN", default=DEFAULT_SINCE,
           help=f"list the conversations active since then: a window such as 24h or 7d, or an ISO-8601 time "
                f"(default {DEFAULT_SINCE}; from the time index)")
    option("--all", action="store_true",
           help="list every conversation in the store, whenever it was active (walks the whole store on each look)")
    option("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
           help=f"conversations listed, those with the latest activity first (default {DEFAULT_LIMIT})")
    option("--poll", type=float, metavar="SECONDS",
           help="how often the page checks for news (default 2 for a SQLite file, 5 for a bucket)")


def run(args: argparse.Namespace) -> int:
    """Open the store read-only, bind the address, print the page's URL, then serve until stopped."""
    if args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    if args.poll is not None and not 0.2 <= args.poll <= 3600:
        raise ConfigError("--poll must be a number of seconds from 0.2 to 3600")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a port number (0 to 65535)")
    given = ",".join(args.token) if args.token else os.environ.get("TAVUS_CALLBACK_TOKENS", "")
    tokens = parse_tokens(given, required=False, source="--token" if args.token else "TAVUS_CALLBACK_TOKENS")
    generated = not tokens
    if generated:
        tokens = (secrets.token_urlsafe(32),)
    since = _since(args.since)
    store, prefix = open_read_only(args.store)
    listener = _bind(args.host, args.port)
    port = listener.getsockname()[1]
    reader = Reader(store, Layout(prefix), limit=args.limit, since=since, whole_store=args.all)
    inspector = InspectorApp(reader, tokens, args.host, port, read_only=True,
                             poll_ms=int(args.poll * 1000) if args.poll else None)
    token = tokens[0] if generated else "<your token>"
    print(f"tavus-callbacks inspect: reading {store.url}{f' (prefix {prefix})' if prefix else ''}, read-only\n"
          f"Open {inspector.origin}{ROOT}?token={token}", flush=True)
    configure_logging("warning", tokens)
    config = uvicorn.Config(standalone(inspector), lifespan="off", access_log=False, log_config=None,
                            log_level="warning", server_header=False, proxy_headers=False, timeout_keep_alive=5)
    run_server(uvicorn.Server(config), listener)
    return 0


def run_server(server: uvicorn.Server, listener: socket.socket) -> None:
    """Serve on the bound socket until stopped (SIGINT / SIGTERM)."""
    server.run(sockets=[listener])


def _since(text: str) -> datetime | timedelta:
    """An ISO-8601 time as it is; a duration (24h, 7d) as a window that moves with the clock."""
    now = datetime.now(UTC)
    start = parse_since(text, now)  # a ConfigError naming --since when it is neither
    try:
        parse_time(text)
    except ConfigError:
        return now - start
    return start


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, or a ConfigError saying what to change."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
                          "(0 picks a free one) or --host") from None
    return listener
