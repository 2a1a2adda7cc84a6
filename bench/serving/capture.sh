#!/usr/bin/env bash
# Monitoring cost benchmark (see bench/README.md): kiln-serve with capture off vs 100 % capture.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || apt-get install -y wrk
exec .venv/bin/python bench/serving/capture.py "$@"
