#!/usr/bin/env bash
# Debian packages the dev cluster and the benchmarks need; installs only what is missing.
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# runc and the CNI plugins run the nodes' containers; buildah, debootstrap and busybox-static
# build the images they pull (scripts/build-images.sh).
for pkg in iproute2 iptables conntrack wrk util-linux procps ca-certificates runc \
  containernetworking-plugins buildah podman debootstrap busybox-static gcc libc6-dev; do
  have "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then echo "==> Debian packages present"; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install: ${need[*]}"; exit 1; fi
echo "==> apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
