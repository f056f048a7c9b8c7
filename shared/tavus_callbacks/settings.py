"""Configuration: every `TAVUS_*` environment variable, with its default, parsed and validated here by one reader
(`Variables.read`, pydantic models), in groups read when they are needed (a bad reconcile or webhook setting never
stops callbacks from being stored); a command-line flag given in place of a variable is named in its messages."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, field_validator

from tavus_callbacks.errors import ConfigError

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_STORE_URL = "sqlite:///tavus.db"
DEFAULT_API_URL = "https://tavusapi.com"
DEFAULT_MAX_PER_MINUTE = 120
DEFAULT_SINCE = "72h"
DEFAULT_BUDGET = 10.0  # seconds a scheduled run works for unless its platform leaves less
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")
MIN_TOKEN_LENGTH = 16
MAKE_TOKEN = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the pipeline needs to know about its deployment."""

    tokens: tuple[str, ...]
    store_url: Stripped = DEFAULT_STORE_URL
    max_body_bytes: Annotated[int, counted("whole number of bytes")] = DEFAULT_MAX_BODY_BYTES
    forward_url: Stripped | None = None
    fold_attempts: int = 8

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, flags: Flags | None = None,
                 **overrides: object) -> Settings:
        """The endpoint's settings of `TAVUS_CALLBACK_TOKENS`, `TAVUS_STORE_URL`, `TAVUS_MAX_BODY_BYTES` and
        `TAVUS_FORWARD_URL`, each flag of `flags` in place of its variable."""
        read = EndpointVariables.read(environ, flags)
        settings = cls(tokens=read.callback_tokens, store_url=read.store_url, max_body_bytes=read.max_body_bytes,
                       forward_url=read.forward_url)
        return replace(settings, **overrides) if overrides else settings  # type: ignore[arg-type]

    def with_tokens(self, tokens: tuple[str, ...]) -> Settings:
        """These settings with other tokens (e.g. a secret's)."""
        return replace(self, tokens=tokens)

    def require_tokens(self) -> Settings:
        """Self, or a ConfigError when no token is configured (the endpoint would accept nobody)."""
        if not self.tokens:
            raise ConfigError(
                "TAVUS_CALLBACK_TOKENS is not set: set it to one or more comma-separated secret tokens "
                f"of at least {MIN_TOKEN_LENGTH} characters ({MAKE_TOKEN})"
            )
        return self


def parse_tokens(value: str, *, required: bool = True, source: str = "TAVUS_CALLBACK_TOKENS") -> tuple[str, ...]:
    """Comma-separated tokens, stripped; each a real secret (see `not_a_secret`) of MIN_TOKEN_LENGTH or more."""
    tokens = tuple(t.strip() for t in value.split(",") if t.strip())
    if required and not tokens:
        raise ConfigError(f"{source} is empty: give at least one token")
    for i, token in enumerate(tokens, 1):
        why = not_a_secret(token)
        if why is not None:
            raise ConfigError(f"{source}: token #{i} {why}")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"{source}: token #{i} is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH} "
                f"({MAKE_TOKEN})"
            )
    return tokens


# Text a platform leaves in a setting when it could not put the secret there, each with what to check.
_REFERENCES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"@Microsoft\.KeyVault\(", re.IGNORECASE),
     "is an Azure Key Vault reference the platform could not resolve: give the function app's managed identity "
     "the 'Key Vault Secrets User' role on the vault (or a Get access policy on secrets), let the vault's "
     "firewall admit the app, check the syntax @Microsoft.KeyVault(VaultName=<vault>;SecretName=<name>) or "
     "@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>/), then restart the app; "
     "the app setting's 'Source' column in the portal shows why the reference failed"),
    (re.compile(r"@Microsoft\.AppConfiguration\(", re.IGNORECASE),
     "is an Azure App Configuration reference the platform could not resolve: give the function app's managed "
     "identity the 'App Configuration Data Reader' role on the store and check the reference's syntax"),
    (re.compile(r"\{\{\s*resolve\s*:", re.IGNORECASE),
     "is a CloudFormation dynamic reference ({{resolve:...}}) left unresolved: CloudFormation resolves it only in "
     "a template property at deploy time; put the secret's name or ARN in TAVUS_CALLBACK_TOKENS_SECRET instead"),
    (re.compile(r"^arn:aws[a-z-]*:(secretsmanager|ssm):", re.IGNORECASE),
     "is the ARN of a secret, not its value: set TAVUS_CALLBACK_TOKENS_SECRET to it (the function reads the "
     "secret and needs secretsmanager:GetSecretValue on it) and leave TAVUS_CALLBACK_TOKENS unset"),
    (re.compile(r"^projects/[^/]+/secrets/", re.IGNORECASE),
     "is the name of a Secret Manager secret, not its value: expose the secret as the variable with "
     "`--set-secrets=TAVUS_CALLBACK_TOKENS=<secret>:<version>` and give the function's service account "
     "roles/secretmanager.secretAccessor on it"),
    (re.compile(r"\$\{|\$\(|^\$[A-Za-z_][A-Za-z0-9_]*$|^%[A-Za-z_][A-Za-z0-9_]*%$"),
     "is a variable reference (${...}, $(...), $NAME or %NAME%) that was never expanded: the shell or deploy "
     "tool passed it through literally; set the token itself, or check how the variable is quoted"),
)
# A placeholder is text a person meant to replace: wrapped in <>, [] or {}, nearly one repeated character,
# or nothing but words such as "your", "token", "here", "changeme" (at least 5 letters first) and numbers, as
# in "replace-with-a-token-of-at-least-16-characters".
_WRAPPED = re.compile(r"^(<.*>|\[.*\]|\{.*\})$", re.DOTALL)
_PLACEHOLDER_WORDS = re.compile(
    r"(?=[a-z]{5})(?:a|an|and|api|at|auth|bearer|callback|callbacks|change|changeme|char|chars|character|"
    r"characters|default|dummy|example|fake|fixme|for|generate|generated|goes|here|insert|it|key|least|long|me|"
    r"min|minimum|my|new|of|one|our|password|paste|placeholder|put|random|real|replace|sample|secret|secrets|set|"
    r"string|tavus|test|testing|the|this|to|todo|token|tokens|value|webhook|with|your|xxx|[0-9]+)+")
MIN_DISTINCT_CHARACTERS = 5


def not_a_secret(token: str) -> str | None:
    """Why `token` cannot be a real secret (an unresolved platform reference or a placeholder), or None.

    A configured token that is not a secret must fail closed: accepted, it would let anyone who can read
    the reference or guess the placeholder store callbacks. The reason never repeats the value.
    """
    for pattern, why in _REFERENCES:
        if pattern.search(token):
            return why
    letters = re.sub(r"[^a-z0-9]", "", token.lower())
    if _WRAPPED.match(token) or len(set(token)) < MIN_DISTINCT_CHARACTERS or _PLACEHOLDER_WORDS.fullmatch(letters):
        return f"is a placeholder, not a secret: replace it with a random token ({MAKE_TOKEN})"
    return None


WEBHOOK_SECRETS_VARIABLE = "TAVUS_WEBHOOK_SECRETS"
WEBHOOK_SECRETS_SECRET_VARIABLE = "TAVUS_WEBHOOK_SECRETS_SECRET"
WEBHOOK_MAX_BYTES_VARIABLE = "TAVUS_WEBHOOK_MAX_BYTES"
DEFAULT_WEBHOOK_MAX_BYTES = 1024 * 1024
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_KEY_BYTES = (24, 64)  # what the Standard Webhooks specification asks of a symmetric secret
MAKE_WEBHOOK_SECRET = ("make one with: python -c 'import base64, secrets; "
                       "print(\"whsec_\" + base64.b64encode(secrets.token_bytes(32)).decode())'")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """How events are signed and sized for an HTTP sink (a Standard Webhooks endpoint of TAVUS_FORWARD_URL):
    the secrets themselves, or the Secrets Manager secret that holds them (read when signing, cached).

    Read only when such a sink is configured, so a bad secret never stops callbacks from being stored.
    """

    secrets: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_WEBHOOK_MAX_BYTES
    secret_id: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookSettings:
        """Read `TAVUS_WEBHOOK_SECRETS` (or `TAVUS_WEBHOOK_SECRETS_SECRET`, the name or ARN of a Secrets Manager
        secret holding them) and `TAVUS_WEBHOOK_MAX_BYTES`."""
        read = WebhookVariables.read(environ)
        return cls(secrets=read.webhook_secrets, max_body_bytes=read.webhook_max_bytes,
                   secret_id=read.webhook_secrets_secret)

    def __repr__(self) -> str:  # never the secrets, whoever prints the settings
        return (f"WebhookSettings(secrets=<{len(self.secrets)} hidden>, max_body_bytes={self.max_body_bytes}, "
                f"secret_id={self.secret_id!r})")


def parse_webhook_secrets(value: str, *, source: str = WEBHOOK_SECRETS_VARIABLE,
                          bare: bool = False) -> tuple[str, ...]:
    """Comma-separated Standard Webhooks secrets (`whsec_` + base64 of 24 to 64 random bytes), the newest first;
    every delivery is signed with each, so a receiver holding any of them verifies it during a rotation. With
    `bare`, an entry may be the base64 part alone (what a secret store generates), and gets the prefix."""
    secrets = tuple(s.strip() for s in value.split(",") if s.strip())
    if bare:
        secrets = tuple(s if s.startswith(WEBHOOK_SECRET_PREFIX) else WEBHOOK_SECRET_PREFIX + s for s in secrets)
    if not secrets:
        raise ConfigError(f"{source} is not set: an http(s):// sink in TAVUS_FORWARD_URL signs every delivery with "
                          f"it; give one or more comma-separated whsec_ secrets ({MAKE_WEBHOOK_SECRET}), or on AWS "
                          f"name the Secrets Manager secret holding them in {WEBHOOK_SECRETS_SECRET_VARIABLE}")
    for i, secret in enumerate(secrets, 1):
        why = _not_a_webhook_secret(secret)
        if why is not None:
            raise ConfigError(f"{source}: secret #{i} {why}")
    return secrets


def _not_a_webhook_secret(secret: str) -> str | None:
    """Why `secret` is not a usable signing secret, or None; the reason never repeats the value."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return (f"does not start with {WEBHOOK_SECRET_PREFIX}: give the signing secret itself, not a reference "
                "the platform left unresolved (@Microsoft.KeyVault(...), {{resolve:...}}, an ARN, a Secret Manager "
                f"name) nor a placeholder ({MAKE_WEBHOOK_SECRET})")
    encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f"is not {WEBHOOK_SECRET_PREFIX} followed by base64 ({MAKE_WEBHOOK_SECRET})"
    low, high = WEBHOOK_KEY_BYTES
    if not low <= len(key) <= high:
        return (f"holds {len(key)} bytes; the Standard Webhooks specification wants {low} to {high} "
                f"({MAKE_WEBHOOK_SECRET})")
    if len(set(key)) < MIN_DISTINCT_CHARACTERS:
        return f"is a placeholder, not a secret: replace it with random bytes ({MAKE_WEBHOOK_SECRET})"
    return None


Flags = Mapping[str, tuple[str, object]]  # a field's flag and the value given to it (None: not given)


def source(info: ValidationInfo) -> str:
    """What a message names for a field: the flag it was given with (the validation's context), else its variable."""
    flags: Mapping[str, str] = info.context or {}
    return flags.get(info.field_name or "") or f"TAVUS_{(info.field_name or '').upper()}"


def _text(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value).strip()


def number(value: object, name: str, *, kind: type[int] | type[float] = int, what: str = "whole number",
           low: float = 1, high: float | None = None) -> Any:
    """`value` as a number of `kind` from `low` (to `high`), or a ConfigError naming `name` (a variable or flag)."""
    raw = _text(value)
    try:
        parsed = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {what}") from None
    if high is None and parsed < low:
        raise ConfigError(f"{name}={raw!r} must be {'greater than zero' if low > 0 else 'zero or more'}")
    if high is not None and not low <= parsed <= high:
        raise ConfigError(f"{name}={raw!r} is out of range: use a number from {low:g} to {high:g}")
    return parsed


def counted(what: str, kind: type[int] | type[float] = int, low: float = 1, high: float | None = None) -> Any:
    """A field's check that its value is a `kind` from `low` (to `high`), its message naming the flag or
    variable it came from."""
    return BeforeValidator(lambda value, info: number(value, source(info), kind=kind, what=what, low=low, high=high))


Stripped = Annotated[str, BeforeValidator(_text)]


class Variables(BaseModel):
    """A group of `TAVUS_*` variables: each field is the variable of its name in capitals, after the prefix."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_default=False)

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None, flags: Flags | None = None) -> Self:
        """The group of the environment (`environ`, else os.environ; an empty or blank variable is its default),
        each flag given in `flags` over its variable; a ConfigError naming the flag or the variable when a value
        is not valid."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {name: env[f"TAVUS_{name.upper()}"] for name in cls.model_fields
                                     if env.get(f"TAVUS_{name.upper()}", "").strip()}
        given = {field: (flag, value) for field, (flag, value) in (flags or {}).items() if value not in (None, "")}
        values.update({field: value for field, (_, value) in given.items()})
        try:
            return cls.model_validate(values, context={field: flag for field, (flag, _) in given.items()})
        except ValidationError as exc:  # what no validator of ours said (they raise ConfigError themselves)
            raise ConfigError(str(exc)) from None

    def variables(self) -> dict[str, str]:
        """The group as the TAVUS_* variables that give it (for processes started with the same settings)."""
        unset = (None, False, ())
        return {f"TAVUS_{name.upper()}": "1" if value is True else _text(value)
                for name, value in self.model_dump().items() if not any(value is u or value == () for u in unset)}


class EndpointVariables(Variables):
    """What every deployment's endpoint reads: its tokens, store, body limit and forwarding."""

    callback_tokens: tuple[str, ...] = ()
    store_url: Stripped = DEFAULT_STORE_URL
    max_body_bytes: Annotated[int, counted("whole number of bytes")] = DEFAULT_MAX_BODY_BYTES
    forward_url: Stripped | None = None

    @field_validator("callback_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: object, info: ValidationInfo) -> tuple[str, ...]:
        return parse_tokens(_text(value), required=False, source=source(info))


class SecretVariables(Variables):
    """On AWS, the Secrets Manager secrets (name or ARN) holding the callback tokens and the Tavus API key."""

    callback_tokens_secret: Stripped | None = None
    api_key_secret: Stripped | None = None


class SchedulerVariables(Variables):
    """On Google Cloud, who may call the sweep: the audience Cloud Scheduler puts in its OIDC token, the service
    account the token must be of, and where Google's signing certificates are (unless the default; tests)."""

    reconcile_audience: Stripped | None = None
    reconcile_service_account: Stripped | None = None
    reconcile_certs_url: Stripped | None = None


class DebugVariables(Variables):
    """Whether an unexpected error shows its traceback (TAVUS_DEBUG, any value); apart, so that reading it in an
    error's path never fails."""

    debug: bool = False

    @field_validator("debug", mode="before")
    @classmethod
    def _any(cls, value: object) -> bool:
        return bool(_text(value))


class LoggingVariables(Variables):
    """How `serve` logs: its level and format (auto: text when stderr is a terminal, json otherwise)."""

    log_level: str = "info"
    log_format: str = "auto"

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> str:
        return _text(value).lower()

    @field_validator("log_level", mode="after")
    @classmethod
    def _level(cls, value: str, info: ValidationInfo) -> str:
        if value not in LOG_LEVELS:
            raise ConfigError(f"{source(info)}={value!r}: use debug, info, warning or error")
        return value

    @field_validator("log_format", mode="after")
    @classmethod
    def _format(cls, value: str, info: ValidationInfo) -> str:
        if value not in ("auto", *LOG_FORMATS):
            raise ConfigError(f"{source(info)}={value!r}: use auto, text or json")
        return value


class WebhookVariables(Variables):
    """How an HTTP sink is signed and sized; read only when one is configured."""

    webhook_secrets: tuple[str, ...] = ()
    webhook_secrets_secret: Stripped | None = None
    webhook_max_bytes: Annotated[int, counted("whole number of bytes")] = DEFAULT_WEBHOOK_MAX_BYTES

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _secrets(cls, value: object, info: ValidationInfo) -> tuple[str, ...]:
        return parse_webhook_secrets(_text(value), source=source(info))

    def model_post_init(self, context: Any) -> None:
        """Without secrets nor a secret naming them, an HTTP sink cannot sign: say which to set."""
        if not self.webhook_secrets and not self.webhook_secrets_secret:
            parse_webhook_secrets("")
        if self.webhook_secrets:  # the secrets themselves win over a secret naming them
            object.__setattr__(self, "webhook_secrets_secret", None)


class ReconcileVariables(Variables):
    """The vendor's API and the scheduled sweep: its key, address and rate, how far back and for how long."""

    api_key: Stripped | None = None
    api_url: Stripped = DEFAULT_API_URL
    # 0: no cap
    api_max_rpm: Annotated[int, counted("whole number of requests per minute", low=0)] = DEFAULT_MAX_PER_MINUTE
    reconcile_since: str = DEFAULT_SINCE
    reconcile_budget_seconds: Annotated[float, counted("number of seconds", float, low=1e-9)] = DEFAULT_BUDGET

    @field_validator("reconcile_since", mode="before")
    @classmethod
    def _since(cls, value: object, info: ValidationInfo) -> str:
        parse_since(_text(value), source=source(info))
        return _text(value)

    def since(self, now: datetime | None = None) -> datetime:
        """The start of the sweep's window."""
        return parse_since(self.reconcile_since, now)


class ServeVariables(Variables):
    """Where `serve` listens and how many processes and threads it runs; its parent process sets them (and the
    other groups' variables its flags gave) for the workers it starts."""

    host: Stripped = "127.0.0.1"
    port: Annotated[int, counted("port number", high=65535)] = 8080
    workers: Annotated[int, counted("whole number", high=1e9)] | None = None  # one per CPU
    threads: Annotated[int, counted("whole number", high=1e9)] = 8
    read_timeout: Annotated[float, counted("number of seconds", float, low=0.001, high=1e9)] = 10.0



_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, source: str = "the time") -> datetime:
    """An ISO-8601 date or time; without a zone it is UTC. A ConfigError naming `source` when it is not one."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{source} {text!r} is not an ISO-8601 date or time such as 2025-07-11 or "
                          "2025-07-11T06:45:47Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_since(text: str, now: datetime | None = None, source: str = "--since") -> datetime:
    """`72h`, `30m`, `7d`, `90s` before now, or an ISO-8601 date or time (UTC when it has no zone)."""
    now = now or datetime.now(UTC)
    match = _DURATION.fullmatch(text.strip().lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        return parse_time(text)
    except ConfigError:
        raise ConfigError(f"{source} {text!r} is neither a duration such as 72h, 30m or 7d nor an ISO-8601 time "
                          "such as 2025-07-11T06:00:00Z") from None
