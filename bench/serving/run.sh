#!/usr/bin/env bash
# Serving benchmark (see bench/README.md): kiln-serve vs MLServer vs KServe, on loopback.
# Peers are installed into their own venvs under ~/.cache/kiln/bench/ on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || apt-get install -y wrk
exec .venv/bin/python bench/serving/run.py "$@"
