"""`tavus-callbacks serve`: options from flags over TAVUS_* variables, checked before anything starts, and the
banner telling what to paste into Tavus; the server (adapters/asgi.py) runs the rest."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tavus_callbacks.adapters.asgi import ServeOptions, serve
from tavus_callbacks.console import configure_logging
from tavus_callbacks.errors import ConfigError, StoreUnavailable
from tavus_callbacks.forward import open_sinks
from tavus_callbacks.forward.webhook import WebhookForwarder
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import DEFAULT_STORE_URL, LOG_FORMATS, LOG_LEVELS, Settings
from tavus_callbacks.stores import Store

if TYPE_CHECKING:
    from tavus_callbacks.forward.base import Sink

DEFAULT = ServeOptions()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    option = parser.add_argument
    option("--store", metavar="URL", help="where to store events: sqlite:///file.db, s3://…, gs://…, azure://… "
                                          f"(env TAVUS_STORE_URL; default {DEFAULT_STORE_URL})")
    option("--host", help=f"address to listen on (env TAVUS_HOST; default {DEFAULT.host})")
    option("--port", help=f"port to listen on (env TAVUS_PORT; default {DEFAULT.port})")
    option("--token", action="append", metavar="TOKEN",
           help="secret token callers must present; repeat or comma-separate for rotation "
                "(env TAVUS_CALLBACK_TOKENS; default: a new random token, printed once)")
    option("--workers", metavar="N", help="worker processes (env TAVUS_WORKERS; default: one per CPU)")
    option("--threads", metavar="N", help=f"threads per worker (env TAVUS_THREADS; default {DEFAULT.threads})")
    option("--max-body-bytes", type=int, metavar="N",
           help="largest body accepted (env TAVUS_MAX_BODY_BYTES; default 5 MiB)")
    option("--read-timeout", metavar="SECONDS", help="longest wait for a request's head, then for its whole body "
                                                     f"(env TAVUS_READ_TIMEOUT; default {DEFAULT.read_timeout:g})")
    option("--forward", metavar="URL",
           help="also publish every stored event to a bus (eventbridge://, pubsub://, eventgrid://) or to your own "
                "endpoint as a Standard Webhook (https://, or http:// to a loopback or private address; signed with "
                "TAVUS_WEBHOOK_SECRETS); several comma-separated, each limited with ?types=a,b "
                "(env TAVUS_FORWARD_URL)")
    option("--log-level", choices=LOG_LEVELS,
           help="log verbosity (env TAVUS_LOG_LEVEL; default info)")
    option("--log-format", choices=("auto", *LOG_FORMATS),
           help="text: one readable line per callback (time, answer, type, conversation); json: one JSON object "
                "per line with the fields time, level, logger, pid, message, method, path, status, ms, remote, "
                "result, event_id, type, family, conversation_id, valid, key (env TAVUS_LOG_FORMAT; default auto: "
                "text when stderr is a terminal, json otherwise)")


def run(args: argparse.Namespace) -> int:
    """Validate everything, print the callback URL, then serve until stopped."""
    settings, options, generated = resolve(args, os.environ)
    _check_port_free(options)
    pipeline = Pipeline(settings)  # fail now, with a clear message, on a bad store or forward URL
    try:
        where = pipeline.store.url + (f"/{pipeline.layout.prefix}" if pipeline.layout.prefix else "")
        check_writable(pipeline.store, pipeline.layout.prefix, where)
    finally:
        pipeline.close()
    sinks = open_sinks(settings.forward_url) if settings.forward_url else []
    configure_logging(options.log_level, settings.tokens, options.log_format)
    print(banner(settings, options, generated, where, sinks), flush=True)
    serve(settings, options)
    return 0


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Settings, ServeOptions, bool]:
    """Settings and options of the TAVUS_* variables, each flag given in place of its variable (and named in its
    messages); True when a token was made up."""
    flags = {"callback_tokens": ("--token", ",".join(args.token) if args.token else None),
             "store_url": ("--store", args.store), "max_body_bytes": ("--max-body-bytes", args.max_body_bytes),
             "forward_url": ("--forward", args.forward), "host": ("--host", args.host), "port": ("--port", args.port),
             "workers": ("--workers", args.workers), "threads": ("--threads", args.threads),
             "read_timeout": ("--read-timeout", args.read_timeout), "log_level": ("--log-level", args.log_level),
             "log_format": ("--log-format", args.log_format)}
    settings = Settings.from_env(env, flags)
    generated = not settings.tokens
    if generated:
        settings = settings.with_tokens((secrets.token_urlsafe(32),))
    options = ServeOptions.from_env(env, flags)
    if options.log_format == "auto":
        options = replace(options, log_format="text" if sys.stderr.isatty() else "json")
    return settings, options, generated


PROBE_FOLDER = "_serve/"


def check_writable(store: Store, prefix: str, where: str) -> None:
    """Write a probe object create-only, then remove it: a store `serve` cannot write would answer 503 to every
    callback, so it refuses to start instead, with the store's own reason."""
    key = f"{prefix}{PROBE_FOLDER}probe-{uuid.uuid4().hex}.json"
    try:
        store.create(key, b'{"probe": "tavus-callbacks serve checks that it can write here"}')
    except StoreUnavailable as exc:
        raise ConfigError(f"cannot write to the store {where}, so serve does not start: {exc}") from None
    try:
        store.delete(key)
    except StoreUnavailable as exc:  # written, so callbacks can be stored; the probe stays behind
        print(f"warning: could not remove the probe object {key}: {exc}", file=sys.stderr)


def banner(settings: Settings, options: ServeOptions, generated: bool, store_url: str | None = None,
           sinks: Sequence[Sink] = ()) -> str:
    """What to paste into Tavus, and where events are forwarded; the token is shown only when it was made up for
    this run, a signing secret never."""
    token = settings.tokens[0] if generated else "<your token>"
    lines = [f"tavus-callbacks serve: listening on {options.base_url} ({options.workers} worker processes), "
             f"storing in {store_url or settings.store_url}",
             f"Callback URL: {options.base_url}?token={token}",
             f"Look at what arrives: {options.base_url}_/?token={token}"]
    if generated:
        lines.append("This token was generated for this run: pass --token or set TAVUS_CALLBACK_TOKENS "
                     "to keep the same URL across restarts.")
    lines.append(f"Tavus must reach it from the internet: expose port {options.port} with a tunnel "
                 f"(e.g. `ngrok http {options.port}`) and use the tunnel's https address with the same "
                 "?token=... as callback_url.")
    if sinks:
        lines.append("Forwarding every stored event to " + ", ".join(_describe(sink) for sink in sinks))
    lines.append(f"Try it: tavus-callbacks send --all --url '{options.base_url}' --token ...")
    return "\n".join(lines)


def _describe(sink: Sink) -> str:
    """A sink as the banner names it: where, which types, and how a webhook is signed (never the secret)."""
    text = sink.name + (f" (types {','.join(sink.types)})" if sink.types else "")
    if isinstance(sink.forwarder, WebhookForwarder):
        text += " as Standard Webhooks signed with TAVUS_WEBHOOK_SECRETS (webhook-id = the event id)"
    return text


def _check_port_free(options: ServeOptions) -> None:
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((options.host, options.port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}; "
                              "choose another --port (or TAVUS_PORT), or stop what is using it") from None
        except (TypeError, ValueError):  # a host name that cannot be encoded (UnicodeError is a ValueError)
            raise ConfigError(f"--host {options.host!r} is not an address to listen on: use e.g. 127.0.0.1 or "
                              "0.0.0.0 (or TAVUS_HOST)") from None
