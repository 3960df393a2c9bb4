#!/usr/bin/env bash
# Creates .venv with what the Python-side tests need (Helm's real renderer via helm-python-sdk,
# pytest, PyYAML), from PyPI. Idempotent; prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
want="helm-python-sdk==0.2.2 pytest==8.3.5 PyYAML==6.0.2"
stamp="$venv/.hookway-requirements"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want >&2
  echo "$want" > "$stamp"
fi
echo "$PWD/$venv/bin/python"
