#!/usr/bin/env bash
# AWS SAM CLI (and the cfn-lint it brings) in a virtualenv of its own under tests/.tools/sam,
# so its pins never fight the project's. Used by tests/test_template.py. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
SAM_VERSION=1.170.0
VENV=.tools/sam
if [ -x "$VENV/bin/sam" ] && [ -x "$VENV/bin/cfn-lint" ] \
   && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('aws-sam-cli') != '$SAM_VERSION')" 2>/dev/null; then
  exit 0
fi
pick_python() {
  for candidate in python3.13 /root/.pyenv/versions/3.13.0/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import venv" >/dev/null 2>&1; then
      echo "$candidate"; return
    fi
  done
  echo "sam.sh: no python3 with venv found" >&2; exit 1
}
mkdir -p .tools
[ -x "$VENV/bin/python" ] || "$(pick_python)" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "aws-sam-cli==$SAM_VERSION" cfn-lint
echo "sam.sh: aws-sam-cli $SAM_VERSION installed in tests/$VENV"
