#!/usr/bin/env bash
# Tabular serving benchmark (see bench/README.md): kiln-serve vs MLServer, six penguins models.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || apt-get install -y wrk
exec .venv/bin/python bench/serving/tabular.py "$@"
