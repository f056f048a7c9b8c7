"""The OpenAPI 3.1 description of the endpoint, built from the code: payload models and the answers of docs/SPEC.md §3.

`openapi.yaml` at the repository root is this document as YAML (`tavus-callbacks openapi --yaml`); a
test keeps the two identical, so the published contract cannot drift from what the code accepts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from tavus_callbacks import __version__
from tavus_callbacks.errors import ConfigError
from tavus_callbacks.events.schema import payload_json_schema
from tavus_callbacks.pipeline import RETRY_AFTER_SECONDS

OPENAPI_VERSION = "3.1.0"
_SCHEMAS = "#/components/schemas/"

# Every status an answer can have, and why; the test checks the code returns no other.
STATUSES: dict[int, str] = {
    200: "Stored (`stored`), or already stored before (`duplicate`): the event is durable either way.",
    400: "The body is not a JSON object, is nested more than 128 levels, or has an integer beyond 64 bits "
         "(kept in quarantine as received); or it is shorter than its Content-Length.",
    401: "No token, or not one of the configured tokens. Says nothing more.",
    405: "Any method but POST (GET and HEAD on a path ending in /healthz excepted), with an Allow header.",
    408: "The body did not arrive within the read timeout (local server).",
    413: "The body is over the size limit (default 5 MiB); nothing is stored.",
    503: "The store could not be written (or the endpoint is not configured): nothing was acknowledged, "
         "retry after Retry-After seconds.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"{_SCHEMAS}{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(status: int, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": STATUSES[status], "content": _json(_ref(schema))}
    if headers:
        answer["headers"] = headers
    return answer


def _components() -> dict[str, Any]:
    # The same schema with every `#/$defs/X` reference pointing at `#/components/schemas/X`.
    payload = json.loads(json.dumps(payload_json_schema()).replace('"#/$defs/', f'"{_SCHEMAS}'))
    schemas: dict[str, Any] = dict(sorted(payload.pop("$defs").items()))
    schemas["TavusCallback"] = payload
    schemas["Accepted"] = {
        "type": "object",
        "description": "The event is durable in the store; retrying the same callback answers `duplicate`.",
        "required": ["status", "event_id"],
        "properties": {
            "status": {"type": "string", "enum": ["stored", "duplicate"]},
            "event_id": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                         "description": "SHA-256 of the payload's canonical JSON: the same for every retry."},
            "type": {"type": "string", "description": "CloudEvents type, e.g. io.tavus.conversation.system.shutdown"},
            "valid": {"type": "boolean",
                      "description": "False when a known type failed its schema: stored whole, marked invalid."},
        },
    }
    schemas["Error"] = {
        "type": "object",
        "description": "What went wrong and what to do; never echoes the body or the token.",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    }
    schemas["Health"] = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
        "additionalProperties": False,
    }
    return {
        "responses": {
            "MethodNotAllowed": {
                "description": STATUSES[405] + " Not listed per path: every method not documented there gets it.",
                "headers": {"Allow": {"$ref": "#/components/headers/Allow"}},
                "content": _json(_ref("Error")),
            },
        },
        "schemas": schemas,
        "securitySchemes": {
            "token": {"type": "apiKey", "in": "query", "name": "token",
                      "description": "The secret token in the callback URL: `https://host/?token=...`."},
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "The same token as `Authorization: Bearer ...`."},
        },
        "headers": {
            "Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9]+$", "example": RETRY_AFTER_SECONDS}},
            "Allow": {"description": "The methods the path accepts: POST (and GET, HEAD on /healthz).",
                      "required": True, "schema": {"type": "string", "enum": ["POST", "GET, HEAD, POST"]}},
        },
    }


def _callback_operation(operation_id: str, summary: str) -> dict[str, Any]:
    retry = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": (
            "One Tavus callback (any of the five families, or any other JSON object). Authenticated by the "
            "token; stored exactly once before the answer; a known type that fails its schema is stored whole "
            "and marked invalid; a body that is not a JSON object is quarantined and answered 400."
        ),
        "security": [{"token": []}, {"bearer": []}],
        "requestBody": {"required": True, "content": _json(_ref("TavusCallback"))},
        "responses": {
            "200": _answer(200, "Accepted"),
            "400": _answer(400, "Error"),
            "401": _answer(401, "Error"),
            "408": _answer(408, "Error"),
            "413": _answer(413, "Error"),
            "503": _answer(503, "Error", retry),
        },
    }


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the endpoint, as a JSON value."""
    health = {"description": "Alive; reveals nothing else and needs no token.", "content": _json(_ref("Health"))}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tavus-callbacks",
            "version": __version__,
            "summary": "Receives Tavus callbacks: authenticated, normalized, stored exactly once.",
            "description": (
                "One endpoint, the same on AWS Lambda, Google Cloud Functions, Azure Functions and "
                "`tavus-callbacks serve`. Callbacks are accepted on `/` and on any other path; only GET and "
                "HEAD on a path ending in `/healthz` are not callbacks, and any other method is answered 405 "
                "(`#/components/responses/MethodNotAllowed`). Never a 2xx before the event is durable, never a "
                "5xx for anything the sender did (503 means: retry later)."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": {
            "/": {"post": _callback_operation("callback", "Receive one callback")},
            "/{path}": {
                "post": _callback_operation("callback_on_path", "Receive one callback on any other path"),
                "parameters": [{"name": "path", "in": "path", "required": True,
                                "description": "Any path segment: the callback is the same wherever it lands.",
                                "schema": {"type": "string", "minLength": 1}}],
            },
            "/healthz": {
                "get": {"operationId": "health", "summary": "Liveness", "security": [], "responses": {"200": health}},
                "head": {"operationId": "health_head", "summary": "Liveness, headers only", "security": [],
                         "responses": {"200": {"description": "Alive."}}},
                "post": _callback_operation("callback_on_healthz", "A POST here is a callback like anywhere else"),
            },
        },
        "components": _components(),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`openapi [--yaml]`."""
    parser.add_argument("--yaml", action="store_true", help="print YAML (needs PyYAML) instead of JSON")


def run(args: argparse.Namespace) -> int:
    """`openapi`: the endpoint's OpenAPI document on stdout."""
    sys.stdout.write(dump_yaml(build_spec()) if args.yaml else json.dumps(build_spec(), indent=2) + "\n")
    return 0


def dump_yaml(spec: dict[str, Any]) -> str:
    """The document as block-style YAML in a stable order (PyYAML, imported only here)."""
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        raise ConfigError("--yaml needs PyYAML: pip install pyyaml (or drop --yaml for JSON)") from None
    header = "# Generated by `tavus-callbacks openapi --yaml`; tests/unit/test_openapi.py keeps it in sync.\n"
    text: str = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=110)
    return header + text
