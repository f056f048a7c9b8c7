#!/usr/bin/env bash
# Set up everything the tests need (a virtualenv, the emulators) and run the whole suite:
#   bash tests/run.sh            # any extra arguments go to pytest, e.g. -k s3 -x
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  # A pyenv install may have 3.13 without selecting it: ask pyenv where it is, when there is a pyenv.
  local pyenv_313=""
  if command -v pyenv >/dev/null 2>&1; then
    pyenv_313="$(PYENV_VERSION="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.|$)' | tail -1)" pyenv which python 2>/dev/null || true)"
  fi
  for candidate in "${PYTHON:-}" python3.13 "$pyenv_313" python3.12 python3; do
    # Run it: a pyenv shim exists on PATH even when its version is not selected.
    if [ -n "$candidate" ] && "$candidate" -c "import sys, venv; sys.exit(sys.version_info < (3, 11))" >/dev/null 2>&1; then
      echo "$candidate"; return
    fi
  done
  echo "no python3 found" >&2; exit 1
}

if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[aws,gcp,azure,dev]'

for script in tests/install/*.sh; do
  [ -e "$script" ] || continue
  bash "$script"
done

export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check shared functions tests bench
echo "== mypy --strict (core)"; mypy
echo "== import contracts (layers, no cycles)"; lint-imports
echo "== pytest"; exec python -m pytest "$@"
