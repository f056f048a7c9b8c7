#!/usr/bin/env bash
# AWS SAM CLI (and the cfn-lint it brings) in a virtualenv of its own under tests/.tools/sam,
# so its pins never fight the project's. Used by tests/deploy/test_template.py. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
SAM_VERSION=1.170.0
VENV=.tools/sam
if [ -x "$VENV/bin/sam" ] && [ -x "$VENV/bin/cfn-lint" ] \
   && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('aws-sam-cli') != '$SAM_VERSION')" 2>/dev/null; then
  exit 0
fi
mkdir -p .tools
# The project's interpreter (tests/run.sh makes ../.venv first), or PYTHON, or python3.
[ -x "$VENV/bin/python" ] || "${PYTHON:-$( [ -x ../.venv/bin/python ] && echo ../.venv/bin/python || echo python3)}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "aws-sam-cli==$SAM_VERSION" cfn-lint
echo "sam.sh: aws-sam-cli $SAM_VERSION installed in tests/$VENV"
