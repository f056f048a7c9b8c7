"""`tavus-callbacks build`: self-contained folders a cloud's own tool can deploy as they are.

Each bundle holds the cloud's adapter (from functions/<cloud>/), a copy of this package and the
adapter's pinned requirements.txt, so `gcloud functions deploy --source` and
`func azure functionapp publish` upload one folder with nothing else to fetch from the repository.
(`sam build` does not need one: template.yaml points at functions/aws, which links to this package.)
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

from tavus_callbacks.errors import TavusCallbacksError

CLOUDS = ("aws", "gcp", "azure")
PACKAGE = "tavus_callbacks"
MARKER = ".tavus-callbacks-bundle"
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache", ".ruff_cache")

# How each bundle is deployed, printed after a build. `deploy` makes the bucket, identity, secret and roles the
# function needs before uploading (a bare `gcloud functions deploy` gives a function that answers 503).
DEPLOY_HINTS = {
    "aws": "sam build && sam deploy --guided   (from the repository root; this folder also works as a zip)",
    "gcp": "tavus-callbacks deploy gcp --project PROJECT --region REGION   (bucket, service account, secret, "
           "roles, then gcloud functions deploy --gen2 --source {out}; the README lists each command)",
    "azure": "tavus-callbacks deploy azure --resource-group GROUP --location LOCATION   (storage, app, identity, "
             "Key Vault, roles, then func azure functionapp publish from {out}; the README lists each command)",
}


class BundleError(TavusCallbacksError):
    """A bundle cannot be built: the adapters are not where they should be, or the output is unsafe."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A built folder: which cloud, where, how many files and bytes it holds."""

    cloud: str
    path: Path
    files: int
    size: int


def package_dir() -> Path:
    """The folder of this package, copied whole into every bundle."""
    return Path(__file__).resolve().parent.parent


def functions_dir() -> Path:
    """functions/ of the repository this package runs from (or of the current directory)."""
    candidates = [package_dir().parent.parent / "functions", Path.cwd() / "functions"]
    for candidate in candidates:
        if (candidate / "gcp" / "main.py").is_file():
            return candidate
    raise BundleError(
        "cannot find the adapters (functions/aws, functions/gcp, functions/azure): run `tavus-callbacks build` "
        "from a checkout of the repository, installed with `pip install -e .`"
    )


def build_bundle(cloud: str, out_dir: Path | str) -> Bundle:
    """Make `out_dir` a self-contained deployable folder for `cloud`: adapter + package + requirements.txt."""
    if cloud not in CLOUDS:
        raise BundleError(f"unknown cloud {cloud!r}: choose one of {', '.join(CLOUDS)}")
    source = functions_dir() / cloud
    out = Path(out_dir).resolve()
    _clear(out)
    out.mkdir(parents=True)
    for entry in sorted(source.iterdir()):
        if entry.name == PACKAGE or entry.name in ("__pycache__",):
            continue  # functions/aws links to the package; the copy below is the real one
        if entry.is_dir():
            shutil.copytree(entry, out / entry.name, ignore=_SKIP)
        else:
            shutil.copy2(entry, out / entry.name)
    if not (out / "requirements.txt").is_file():
        raise BundleError(f"{source}/requirements.txt is missing: the cloud's build needs it")
    shutil.copytree(package_dir(), out / PACKAGE, ignore=_SKIP)
    (out / MARKER).write_text(f"{cloud}\n")
    files = [p for p in out.rglob("*") if p.is_file()]
    return Bundle(cloud, out, len(files), sum(p.stat().st_size for p in files))


def _clear(out: Path) -> None:
    """Remove a previous bundle at `out`; refuse to touch a folder that is not one."""
    if not out.exists():
        return
    if not out.is_dir():
        raise BundleError(f"{out} exists and is not a folder: choose another --out")
    if any(out.iterdir()) and not (out / MARKER).is_file():
        raise BundleError(f"{out} is not empty and was not made by `tavus-callbacks build`: choose another --out")
    shutil.rmtree(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cloud", choices=[*CLOUDS, "all"], help="which cloud's bundle to build")
    parser.add_argument("--out", default="build", metavar="DIR",
                        help="parent folder of the bundles; each goes to DIR/<cloud> (default: build)")


def run(args: argparse.Namespace) -> int:
    """Build the chosen bundles and say how to deploy each."""
    clouds = CLOUDS if args.cloud == "all" else (args.cloud,)
    for cloud in clouds:
        bundle = build_bundle(cloud, Path(args.out) / cloud)
        print(f"{cloud}: {bundle.path} ({bundle.files} files, {bundle.size / 1024:.0f} KiB)")
        print(f"  deploy: {DEPLOY_HINTS[cloud].format(out=bundle.path)}")
    return 0
