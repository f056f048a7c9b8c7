"""What `deploy gcp|azure --forward` shares: the forward setting checked before anything is created, and the
Standard Webhooks signing secret each cloud keeps in its secret store, made once."""

from __future__ import annotations

import base64
import secrets

from tavus_callbacks.forward import HTTP_SCHEMES
from tavus_callbacks.forward.base import split_sinks, take_types
from tavus_callbacks.forward.webhook import check_sink_url
from tavus_callbacks.settings import parse_webhook_secrets

SECRET_NAME = "tavus-webhook-secrets"  # in Secret Manager and in Key Vault
FORWARD_HELP = ("deliver every stored event to your endpoint as a Standard Webhook (https://...) or to a bus, as "
                "TAVUS_FORWARD_URL takes it (several comma-separated, ?types=a,b); an https:// sink gets a signing "
                "secret made once in the cloud's secret store and printed; kept for later runs")


def check_forward(value: str) -> bool:
    """Refuse a forward setting that cannot work (a ConfigError, before anything is created); True when it names
    an HTTP sink, which needs the signing secret."""
    webhook = False
    for sink in split_sinks(value):
        target, _ = take_types(sink, "--forward")
        if target.partition("://")[0].lower() in HTTP_SCHEMES:
            check_sink_url(target, "--forward")
            webhook = True
    return webhook


def new_secret() -> str:
    """A fresh signing secret: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def newest(value: str, source: str) -> str:
    """The first (newest) of the secrets a secret store holds, checked; what a receiver is given."""
    return parse_webhook_secrets(value, source=source, bare=True)[0]
