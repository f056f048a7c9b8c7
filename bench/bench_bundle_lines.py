"""Lines of Python each function bundle holds, against the runtime's target of 4,500.

    .venv/bin/python bench/bench_bundle_lines.py [--modules]

Builds each cloud's bundle (`tavus-callbacks build`) into a temporary folder and prints, per cloud, its Python
lines counted as `wc -l` does (every line, blank and docstring included) and, when radon is installed
(`pip install radon`), its source lines of code (radon's raw SLOC). `--modules` adds each module's lines, largest
first, for the aws bundle: where the rest of the runtime is.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tavus_callbacks.cli.build import CLOUDS, build_bundle

TARGET = 4500

try:
    from radon.raw import analyze
except ImportError:  # radon is not a dependency: the SLOC column is left out without it
    analyze = None


def python_files(bundle: Path) -> list[Path]:
    return sorted(bundle.rglob("*.py"))


def lines(path: Path) -> int:
    """Every line, as `wc -l` counts them (the newlines)."""
    return path.read_bytes().count(b"\n")


def sloc(path: Path) -> int | None:
    return None if analyze is None else int(analyze(path.read_text()).sloc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="each module's lines in the aws bundle")
    args = parser.parse_args()
    print(f"{'cloud':6} {'files':>5} {'lines':>7} {'SLOC':>7} {'target':>7} {'over':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for cloud in CLOUDS:
            bundle = build_bundle(cloud, Path(tmp) / cloud).path
            files = python_files(bundle)
            total = sum(lines(f) for f in files)
            counted = [sloc(f) for f in files]
            code = "-" if analyze is None else str(sum(c or 0 for c in counted))
            print(f"{cloud:6} {len(files):>5} {total:>7} {code:>7} {TARGET:>7} {max(total - TARGET, 0):>6}")
            if args.modules and cloud == "aws":
                modules = sorted(((lines(f), f.relative_to(bundle).as_posix()) for f in files), reverse=True)
    if args.modules:
        print("\naws bundle, by module:")
        for count, name in modules:
            print(f"{count:>6}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
