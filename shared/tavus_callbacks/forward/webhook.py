"""Standard Webhooks delivery: each stored CloudEvent POSTed to a team's own endpoint, signed with `standardwebhooks`.

The body is the stored CloudEvent as stored (structured mode, `application/json`); `webhook-id` is the event id,
so every delivery of one event carries the same id to deduplicate on; `webhook-timestamp` is the attempt's time
and `webhook-signature` holds one `v1,<base64 HMAC-SHA256>` per configured secret (several during a rotation).
A 2xx is delivered; no answer, a 408, a 429 or a 5xx raises ForwardError so the change feed delivers the event
again; any other answer is a refusal no retry would change: logged as an error naming the event, and dropped.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import standardwebhooks
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from tavus_callbacks import __version__
from tavus_callbacks.errors import ConfigError, ForwardError, needs_extra
from tavus_callbacks.forward.base import redact_url, thin_record
from tavus_callbacks.record import canonical_json
from tavus_callbacks.settings import WEBHOOK_SECRETS_SECRET_VARIABLE, WebhookSettings, parse_webhook_secrets

if TYPE_CHECKING:
    from tavus_callbacks.record import Record

log = logging.getLogger("tavus_callbacks")

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0  # the specification recommends giving a receiver 15 to 30 s to answer
POOL_SIZE = 32  # connections kept per sink host: more than the threads deriving at once
ANSWER_EXCERPT = 300  # characters of a refusal's body quoted in its log line
USER_AGENT = f"tavus-callbacks/{__version__} (Standard Webhooks)"
RETRYABLE_STATUSES = frozenset({408, 429})  # and every 5xx
SECRET_MAX_AGE = 300  # seconds a secret store's value is reused before it is read again


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one attempt: the sink's status (0 when it gave none) and what went wrong, if anything."""

    status: int
    problem: str = ""
    retry_after: str | None = None

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed: no answer, 408, 429 or a 5xx."""
        return self.status == 0 or self.status in RETRYABLE_STATUSES or self.status >= 500


class WebhookForwarder:
    """Delivers each stored event to one HTTP(S) endpoint as a Standard Webhook, over a pool of kept connections."""

    def __init__(self, url: str, settings: WebhookSettings, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT) -> None:
        parts = urlsplit(url)
        self.url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # credentials go in a header
        self.sink = redact_url(url)
        self.max_body_bytes = settings.max_body_bytes
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._secret_id = settings.secret_id
        self._signed_with: str | None = None  # the secret store's value the signers were made from
        self._signers = _signers(settings.secrets)
        self._headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        if parts.username is not None:
            self._headers.update(urllib3.make_headers(
                basic_auth=f"{unquote(parts.username)}:{unquote(parts.password or '')}"))
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=POOL_SIZE, block=False, retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout))

    def __repr__(self) -> str:  # neither the secrets nor the sink's query
        return f"WebhookForwarder({self.sink!r})"

    @classmethod
    def from_url(cls, url: str, settings: WebhookSettings | None = None,
                 source: str = "TAVUS_FORWARD_URL") -> WebhookForwarder:
        """`https://...`, or `http://` to a loopback or private address; secrets and size limit from `settings`
        (by default TAVUS_WEBHOOK_SECRETS and TAVUS_WEBHOOK_MAX_BYTES)."""
        check_sink_url(url, source)
        return cls(url, WebhookSettings.from_env() if settings is None else settings)

    def body(self, record: Record, store_url: str) -> bytes:
        """The stored CloudEvent's bytes, or its thin form (a `dataref` to the object) when over the limit."""
        if len(record.body) > self.max_body_bytes:
            return canonical_json(thin_record(record, store_url))
        return record.body

    def headers(self, event_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
        """The request's headers: content type, `webhook-id`, `webhook-timestamp` and one signature per secret."""
        moment = datetime.fromtimestamp(int(time.time() if now is None else now), UTC)
        signatures = " ".join(signer.sign(event_id, moment, body) for signer in self.signers())
        return {**self._headers, "webhook-id": event_id, "webhook-timestamp": str(int(moment.timestamp())),
                "webhook-signature": signatures}

    def signers(self) -> tuple[standardwebhooks.Webhook, ...]:
        """One signer per secret; those of a secret store's value are made again when the value changes (it is
        read through Powertools' cache, so a rotation shows within POWERTOOLS_PARAMETERS_MAX_AGE seconds)."""
        if self._secret_id is None:
            return self._signers
        value = _stored_secret(self._secret_id)
        if value != self._signed_with:
            source = f"the secret {WEBHOOK_SECRETS_SECRET_VARIABLE}={self._secret_id}"
            try:
                self._signers = _signers(parse_webhook_secrets(value, source=source, bare=True))
            except ConfigError as exc:
                raise ForwardError(str(exc)) from None
            self._signed_with = value
        return self._signers

    def deliver(self, record: Record, store_url: str) -> Delivery:
        """One attempt, signed afresh (a new timestamp, the same id); never raises for what the sink did (a secret
        that cannot be read raises ForwardError)."""
        body = self.body(record, store_url)
        try:
            answer = self._pool.request("POST", self.url, body=body, headers=self.headers(record.id, body),
                                        redirect=False, preload_content=False)
        except HTTPError as exc:
            return Delivery(0, self._transport_problem(exc))
        try:
            excerpt = answer.read(ANSWER_EXCERPT * 4).decode("utf-8", "replace")[:ANSWER_EXCERPT]
            answer.drain_conn()
        except HTTPError as exc:
            excerpt = f"(the answer's body was cut off: {type(exc).__name__})"
        finally:
            answer.release_conn()
        status = answer.status
        if 200 <= status < 300:
            return Delivery(status)
        problem = f"HTTP {status}"
        if 300 <= status < 400:
            location = redact_url(answer.headers.get("location", "")) if answer.headers.get("location") else "?"
            problem += f" (a redirect to {location}: put that address in the sink URL)"
        elif excerpt.strip():
            problem += f": {' '.join(excerpt.split())}"
        return Delivery(status, problem, answer.headers.get("retry-after"))

    def publish(self, record: Record, store_url: str) -> None:
        """Deliver once: return when delivered or refused for good (logged), raise ForwardError to be retried."""
        delivery = self.deliver(record, store_url)
        if delivery.delivered:
            return
        if delivery.retryable:
            after = f", Retry-After {delivery.retry_after}" if delivery.retry_after else ""
            raise ForwardError(f"webhook delivery of event {record.id} to {self.sink} failed "
                               f"({delivery.problem}{after}); it is delivered again with the same webhook-id")
        log.error("webhook delivery of event %s refused by %s (%s), not retried: replay it once the endpoint "
                  "takes it", record.id, self.sink, delivery.problem,
                  extra={"event_id": record.id, "key": record.key, "sink": self.sink, "status": delivery.status,
                         "dead_letter": True})

    def _transport_problem(self, exc: HTTPError) -> str:
        """What a failed attempt looked like, without the URL's query (urllib3's own messages may quote it)."""
        if isinstance(exc, NameResolutionError):
            return f"cannot resolve the host of {self.sink}"
        if isinstance(exc, NewConnectionError):
            reason = getattr(exc.__cause__ or exc.__context__, "strerror", None) or "connection failed"
            return f"cannot connect to {self.sink}: {reason}"
        if isinstance(exc, ConnectTimeoutError):
            return f"no connection to {self.sink} within {self.connect_timeout:g} s"
        if isinstance(exc, ReadTimeoutError):
            return f"no answer from {self.sink} within {self.read_timeout:g} s"
        if isinstance(exc, SSLError):
            return f"TLS failed with {self.sink}: {exc.args[0] if exc.args else type(exc).__name__}"
        if isinstance(exc, ProtocolError):
            return f"the connection to {self.sink} closed before an answer"
        return f"{type(exc).__name__} from {self.sink}"


def _signers(secrets: Sequence[str]) -> tuple[standardwebhooks.Webhook, ...]:
    return tuple(standardwebhooks.Webhook(secret) for secret in secrets)


def _stored_secret(secret_id: str) -> str:
    """The value of a Secrets Manager secret, cached by Powertools for POWERTOOLS_PARAMETERS_MAX_AGE seconds."""
    with needs_extra("aws", f"reading the signing secrets from {WEBHOOK_SECRETS_SECRET_VARIABLE}",
                     "aws-lambda-powertools"):
        from aws_lambda_powertools.utilities.parameters import get_secret
    try:
        value = get_secret(secret_id, max_age=int(os.environ.get("POWERTOOLS_PARAMETERS_MAX_AGE", SECRET_MAX_AGE)))
    except Exception as exc:  # Powertools wraps the SDK's own errors; the message names the secret, not its value
        raise ForwardError(f"cannot read the signing secrets from {WEBHOOK_SECRETS_SECRET_VARIABLE}={secret_id} "
                           f"({type(exc).__name__}: {exc}); this identity needs secretsmanager:GetSecretValue on "
                           "it") from None
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def check_sink_url(url: str, source: str = "TAVUS_FORWARD_URL") -> None:
    """Refuse what cannot be a sink: no host, another scheme, or plain http to an address on the internet
    (every event would cross it unencrypted)."""
    parts = urlsplit(url)
    scheme, where = parts.scheme.lower(), redact_url(url)
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{source}: {where} is not an http(s):// URL with a host")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ConfigError(f"{source}: {where} has a port that is not a number from 0 to 65535") from None
    if scheme == "http" and not is_private_host(parts.hostname):
        raise ConfigError(
            f"{source}: {where} would send every event unencrypted to a public host: use https://, or plain "
            "http:// only to a loopback or private address (localhost, 127.0.0.1, 10.x, 172.16-31.x, 192.168.x, "
            "fd00::/8, or a name that resolves only to such addresses)")


def is_private_host(host: str) -> bool:
    """Whether a host is loopback or private: `localhost` (and `*.localhost`), such an address, or a name that
    resolves only to such addresses (checked when the sink is opened)."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return False
        addresses = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found]
    return bool(addresses) and all(a.is_loopback or a.is_private or a.is_link_local for a in addresses)
