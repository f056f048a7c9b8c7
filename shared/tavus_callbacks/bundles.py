"""What each function bundle (`tavus-callbacks build <cloud>`) holds: the runtime every cloud runs, plus its own
cloud's store, bus, adapter and platform services. Another cloud's parts and the tools (the commands, `serve` with
its embedded store and change feed, the inspector, repair) stay out of every bundle. Paths are inside the package;
a folder stands for everything in it."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

from tavus_callbacks.errors import ConfigError

CLOUDS = ("aws", "gcp", "azure")

# Only the cloud's own bundle holds these.
CLOUD_PARTS: dict[str, tuple[str, ...]] = {
    "aws": ("stores/s3.py", "forward/eventbridge.py", "adapters/aws_lambda.py", "platforms/aws.py"),
    "gcp": ("stores/gcs.py", "forward/pubsub.py", "adapters/gcp.py", "platforms/gcp.py"),
    "azure": ("stores/azure_blob.py", "forward/eventgrid.py", "adapters/azure.py", "platforms/azure.py"),
}

# What only the tools run: no bundle holds it. The commands (cli/), `serve` (its ASGI server, the embedded SQLite
# store and its change feed, the log lines it and the commands write at a terminal), the inspector, repair, the
# time index's reader (`--since`) and the JSON Schemas (`schema`, `openapi`).
TOOLS = ("cli", "inspector", "adapters/asgi.py", "feed.py", "stores/sqlite.py", "console.py", "state/repair.py",
         "state/index.py", "events/schema.py")

PACKAGE_DIR = Path(__file__).resolve().parent


def bundle_cloud() -> str | None:
    """The cloud this copy of the package was built for, or None for the installed package (which holds every
    part): the one cloud whose parts are all here."""
    present = [cloud for cloud, parts in CLOUD_PARTS.items() if all((PACKAGE_DIR / p).exists() for p in parts)]
    return present[0] if len(present) == 1 else None


def require_part(module: str, what: str, instead: Mapping[str, str]) -> None:
    """A ConfigError naming the part when this bundle lacks `module` (e.g. `stores.gcs` in the aws bundle), before
    an import could fail with a traceback; nothing when the part is here. `what` is plural ("gs:// stores"),
    `instead` says, per cloud, what its bundle offers in their place."""
    if importlib.util.find_spec(f"tavus_callbacks.{module}") is not None:
        return
    path = f"{module.replace('.', '/')}.py"
    owner = next((cloud for cloud, parts in CLOUD_PARTS.items() if path in parts), None)
    cloud = bundle_cloud()
    alternative = instead.get(cloud or "", "use one this bundle holds")
    fix = (f"deploy the {owner} bundle (`tavus-callbacks build {owner}`) for them, or {alternative}" if owner
           else f"only the tools run them (`tavus-callbacks serve`); {alternative}")
    raise ConfigError(f"{what} are not in the {cloud or 'this'} bundle: {fix}")
