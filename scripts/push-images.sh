#!/usr/bin/env bash
# Pushes the images `make images` (scripts/build-images.sh) built into the local containers
# storage to the loopback registry, under the names containerd asks that registry for:
# containerd mirrors docker.io, ghcr.io, quay.io and registry.k8s.io to it, so
# `kiln/trainer:0.1.0` is fetched as <registry>/kiln/trainer:0.1.0, `busybox` as
# <registry>/library/busybox:latest and registry.k8s.io/pause:3.10.2 as <registry>/pause:3.10.2.
#
#   local (containers storage)         pushed as (under $KILN_REGISTRY)
#   localhost/kiln/operator:<tag>      kiln/operator:<tag>
#   localhost/kiln/trainer:<tag>       kiln/trainer:<tag>
#   localhost/kiln/server:<tag>        kiln/server:<tag>
#   localhost/kiln/pause:3.10          library/pause:3.10 library/pause:<upstream> pause:3.10 pause:<upstream>
#   localhost/busybox:latest           library/busybox:latest library/busybox:<version>
#   localhost/python:3.11-slim         library/python:3.11-slim library/python:3.11
#   localhost/debian:bookworm          library/debian:bookworm library/debian:latest
#
# Each push prints its digest and duration. A push is cheap when the registry already has
# the layers (only the manifest is written): run it after every `make images`. Needs root
# (rootful storage). Usage: scripts/push-images.sh [--list]   (--list: print the mapping only)
# Environment:
#   KILN_REGISTRY          host:port of the registry, plain HTTP (default 127.0.0.1:5000)
#   KILN_IMAGE_TAG         tag of Kiln's three images (default: the version in pyproject.toml)
#   KILN_PUSH_OPTIONAL=1   exit 0 when the registry does not answer (default: exit 1)
#   KILN_PUSH_COMPRESSION  zstd (default) or gzip: layer compression. zstd: pushing the
#                          trainer took 13 s instead of 18 s and containerd pulled it in
#                          7.5 s instead of 9.5-11 s (containerd >= 1.5, podman, Docker >= 23)
# Exit status: 0 pushed (or skipped with KILN_PUSH_OPTIONAL=1); 1 registry unreachable,
# an image missing (run `make images`) or a push failed.
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=${KILN_REGISTRY:-127.0.0.1:5000}
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
TAG=${KILN_IMAGE_TAG:-$VERSION}
COMPRESSION=${KILN_PUSH_COMPRESSION:-zstd}
T0=$(date +%s.%N)

say() { printf '==> [%6ss] %s\n' "$(since "$T0")" "$*"; }

# The upstream/Debian version build-images.sh recorded on pause and busybox (3.10.2, 1.35).
version_label() {
  buildah inspect --type image --format '{{index .OCIv1.Config.Labels "org.kiln.version"}}' "$1" 2>/dev/null || true
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

mapping() {
  local pause busybox
  pause=$(version_label localhost/kiln/pause:3.10)
  busybox=$(version_label localhost/busybox:latest)
  echo "localhost/kiln/operator:$TAG kiln/operator:$TAG"
  echo "localhost/kiln/trainer:$TAG kiln/trainer:$TAG"
  echo "localhost/kiln/server:$TAG kiln/server:$TAG"
  echo "localhost/kiln/pause:3.10 library/pause:3.10 pause:3.10${pause:+ library/pause:$pause pause:$pause}"
  echo "localhost/busybox:latest library/busybox:latest${busybox:+ library/busybox:$busybox}"
  echo "localhost/python:3.11-slim library/python:3.11-slim library/python:3.11"
  echo "localhost/debian:bookworm library/debian:bookworm library/debian:latest"
}

if [ "${1:-}" = --list ]; then
  mapping | while read -r src dests; do for d in $dests; do echo "$src -> $REGISTRY/$d"; done; done
  exit 0
fi
if [ "$(id -u)" != 0 ]; then echo "push-images.sh needs root (rootful containers storage)"; exit 1; fi

if ! curl -fsS -m 5 -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null; then
  if [ "${KILN_PUSH_OPTIONAL:-0}" = 1 ]; then
    say "registry http://$REGISTRY/v2/ does not answer: images not pushed (KILN_PUSH_OPTIONAL=1)"
    exit 0
  fi
  say "registry http://$REGISTRY/v2/ does not answer: nothing pushed (start it, or set KILN_REGISTRY)"
  exit 1
fi

case $COMPRESSION in
  gzip | zstd) ;;
  *) echo "KILN_PUSH_COMPRESSION must be zstd or gzip, not $COMPRESSION"; exit 1 ;;
esac

lines=$(mapping)
missing=()
while read -r src _; do
  buildah inspect --type image "$src" >/dev/null 2>&1 || missing+=("$src")
done <<<"$lines"
if [ ${#missing[@]} -gt 0 ]; then
  say "not in local storage: ${missing[*]} (run \`make images\`)"
  exit 1
fi

say "pushing to http://$REGISTRY ($COMPRESSION layers)"
digestfile=$(mktemp)
trap 'rm -f "$digestfile"' EXIT
count=0
while read -r src dests; do
  for dest in $dests; do
    t=$(now)
    log=$(buildah push --tls-verify=false --compression-format "$COMPRESSION" --digestfile "$digestfile" \
      "$src" "docker://$REGISTRY/$dest" 2>&1) || { echo "$log" | tail -20; say "push $src -> $REGISTRY/$dest failed"; exit 1; }
    say "pushed $REGISTRY/$dest  $(cat "$digestfile")  ($(since "$t")s)"
    count=$((count + 1))
  done
done <<<"$lines"
say "$count names pushed to $REGISTRY in $(since "$T0")s"
