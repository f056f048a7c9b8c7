"""`tavus-callbacks build`: a self-contained folder per cloud (its entry point from functions/<cloud>/, the runtime
part of this package, the pinned requirements.txt) that `gcloud functions deploy --source` or `func azure functionapp
publish` uploads as it is. What goes in which bundle is the table in `tavus_callbacks.bundles`: the runtime, plus
the cloud's own parts; the tools and the other clouds' parts stay out."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

from tavus_callbacks.bundles import CLOUD_PARTS, CLOUDS, PACKAGE_DIR, TOOLS
from tavus_callbacks.errors import TavusCallbacksError

__all__ = ["CLOUDS", "MARKER", "Bundle", "BundleError", "build_bundle", "left_out"]

PACKAGE = "tavus_callbacks"
MARKER = ".tavus-callbacks-bundle"
# Left out of every copy; functions/aws links to the package, and the bundle gets a real copy of it instead.
_SKIP = shutil.ignore_patterns(PACKAGE, "__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache", ".ruff_cache")

# How each bundle is deployed, printed after a build (`deploy` also makes the bucket, identity, secret and roles).
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
    cloud: str
    path: Path
    files: int
    size: int


def left_out(cloud: str) -> frozenset[str]:
    """The paths inside the package that `cloud`'s bundle does not hold: the tools and every other cloud's parts."""
    others = (part for other, parts in CLOUD_PARTS.items() if other != cloud for part in parts)
    return frozenset((*TOOLS, *others))


def _check_table() -> None:
    """Every path the table names exists, so a renamed module cannot slip into (or out of) a bundle unnoticed."""
    named = (*TOOLS, *(part for parts in CLOUD_PARTS.values() for part in parts))
    missing = [path for path in named if not (PACKAGE_DIR / path).exists()]
    if missing:
        raise BundleError(f"tavus_callbacks.bundles names {', '.join(missing)}, not in {PACKAGE_DIR}: update the table")


def functions_dir() -> Path:
    """functions/ of the repository this package runs from (or of the current directory)."""
    for candidate in (PACKAGE_DIR.parent.parent / "functions", Path.cwd() / "functions"):
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
    shutil.copytree(source, out, ignore=_SKIP)
    if not (out / "requirements.txt").is_file():
        raise BundleError(f"{source}/requirements.txt is missing: the cloud's build needs it")
    _check_table()
    skipped = left_out(cloud)

    def runtime_only(folder: str, names: list[str]) -> set[str]:
        """shutil.copytree's ignore: what the bundle does not hold and the caches, by their path in the package."""
        inside = Path(folder).resolve().relative_to(PACKAGE_DIR)
        return {n for n in names if (inside / n).as_posix() in skipped} | set(_SKIP(folder, names))

    shutil.copytree(PACKAGE_DIR, out / PACKAGE, ignore=runtime_only)
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
