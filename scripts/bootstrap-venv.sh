#!/usr/bin/env bash
# Creates .venv with the project and every extra installed (idempotent; re-run when pyproject changes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $PY"
  "$PY" -m venv .venv
fi
echo "==> installing kiln and its extras into .venv (pip)"
.venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
.venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -q -e '.[operator,trainer,server,devcluster,dev]'
# The local cluster's code (dev/kilndev) is the repository's tooling, not part of the kiln
# package the images install: put it on the venv's path instead.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/dev" >"$site/kilndev.pth"
touch .venv/.installed
echo "==> .venv ready"
