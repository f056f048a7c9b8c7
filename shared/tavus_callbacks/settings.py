"""Configuration from `TAVUS_*` environment variables, read once and validated with clear messages."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from tavus_callbacks.errors import ConfigError

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_STORE_URL = "sqlite:///tavus.db"
MIN_TOKEN_LENGTH = 16
MAKE_TOKEN = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the pipeline needs to know about its deployment."""

    tokens: tuple[str, ...]
    store_url: str = DEFAULT_STORE_URL
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    forward_url: str | None = None
    fold_attempts: int = 8

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read `TAVUS_CALLBACK_TOKENS`, `TAVUS_STORE_URL`, `TAVUS_MAX_BODY_BYTES`, `TAVUS_FORWARD_URL`."""
        env = os.environ if environ is None else environ
        settings = cls(
            tokens=parse_tokens(env.get("TAVUS_CALLBACK_TOKENS", ""), required=False),
            store_url=env.get("TAVUS_STORE_URL", "").strip() or DEFAULT_STORE_URL,
            max_body_bytes=_positive_int(env, "TAVUS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            forward_url=env.get("TAVUS_FORWARD_URL", "").strip() or None,
        )
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
        env = os.environ if environ is None else environ
        value, secret_id = env.get(WEBHOOK_SECRETS_VARIABLE, ""), env.get(WEBHOOK_SECRETS_SECRET_VARIABLE, "").strip()
        return cls(secrets=parse_webhook_secrets(value) if value.strip() or not secret_id else (),
                   max_body_bytes=_positive_int(env, WEBHOOK_MAX_BYTES_VARIABLE, DEFAULT_WEBHOOK_MAX_BYTES),
                   secret_id=None if value.strip() else secret_id or None)

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


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number of bytes") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than zero")
    return value
