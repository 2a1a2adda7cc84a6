#!/usr/bin/env bash
# Builds Kiln's three images without Docker and without a registry, into the local
# containers storage (/var/lib/containers), then runs the trainer image once on the
# example dataset and prints its output. See docs/install.md, "Building the images
# without Docker".
#
#   1. debootstrap a minimal Debian bookworm (python3 3.11, pip, ca-certificates) into
#      $KILN_IMAGES_CACHE (default ~/.cache/kiln/images), once;
#   2. import it as localhost/kiln-base:bookworm (buildah from scratch + add + commit), once;
#   3. buildah bud images/Dockerfile.{operator,trainer,server} with
#      --build-arg PYTHON_IMAGE=localhost/kiln-base:bookworm (the Dockerfiles' default stays
#      python:3.11.11-slim-bookworm), one at a time, layers cached;
#   4. podman run the trainer (read-only root, tmpfs /tmp, no network) on examples/data.
#
# Idempotent: a second run reuses the root filesystem, the base image and the cached
# layers. Needs root (debootstrap, rootful storage), Debian's apt (installs buildah,
# podman, runc and debootstrap when missing) and PyPI for pip inside the build.
# Environment:
#   KILN_IMAGES_CACHE     where the root filesystem goes (default ~/.cache/kiln/images)
#   KILN_DEBIAN_MIRROR    debootstrap mirror (default http://deb.debian.org/debian)
#   KILN_IMAGE_TAG        tag of the three images (default 0.1.0 → localhost/kiln/<name>:0.1.0)
#   KILN_REBUILD_BASE=1   debootstrap and import the base again
#   KILN_BUILD_ISOLATION  buildah --isolation (default chroot: RUN steps need no cgroups)
#   KILN_PODMAN_GLOBAL    podman global flags for the run (default: runc, cgroupfs)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${KILN_IMAGES_CACHE:-$HOME/.cache/kiln/images}
MIRROR=${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
TAG=${KILN_IMAGE_TAG:-0.1.0}
BASE=localhost/kiln-base:bookworm
ROOTFS=$CACHE/rootfs-bookworm
ISOLATION=${KILN_BUILD_ISOLATION:-chroot}
read -r -a PODMAN_GLOBAL <<<"${KILN_PODMAN_GLOBAL:---runtime runc --cgroup-manager=cgroupfs}"
T0=$SECONDS

say() { printf '==> [%4ds] %s\n' $((SECONDS - T0)) "$*"; }
took() { say "$1 took $(($SECONDS - $2))s"; }

if [ "$(id -u)" != 0 ]; then echo "build-images.sh needs root (debootstrap, rootful podman storage)"; exit 1; fi

# --- tools -------------------------------------------------------------------------------
need=()
for pkg in buildah podman runc debootstrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null || { apt-get update -q && apt-get install -y -q "${need[@]}"; }
fi

# --- 1 + 2: the base image -----------------------------------------------------------------
if [ "${KILN_REBUILD_BASE:-0}" = 1 ]; then
  say "KILN_REBUILD_BASE=1: removing $ROOTFS and $BASE"
  rm -rf "$ROOTFS" "$CACHE/rootfs-bookworm.tar"
  buildah rmi "$BASE" >/dev/null 2>&1 || true
fi
mkdir -p "$CACHE"
if [ ! -e "$ROOTFS/.kiln-complete" ]; then
  say "debootstrap bookworm (minbase + python3 python3-pip ca-certificates) into $ROOTFS"
  t=$SECONDS
  rm -rf "$ROOTFS.partial"
  debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
    bookworm "$ROOTFS.partial" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log"; exit 1; }
  # What python:3.11-slim does not carry either: apt lists and .debs, docs, man pages,
  # locales. Without EXTERNALLY-MANAGED (PEP 668), `pip install` in the Dockerfiles installs
  # into /usr/local as it does on the python image.
  rm -rf "$ROOTFS.partial"/var/cache/apt/archives/*.deb "$ROOTFS.partial"/var/lib/apt/lists/* \
    "$ROOTFS.partial"/usr/share/doc/* "$ROOTFS.partial"/usr/share/man/* "$ROOTFS.partial"/usr/share/locale/*
  rm -f "$ROOTFS.partial"/usr/lib/python3.*/EXTERNALLY-MANAGED
  touch "$ROOTFS.partial/.kiln-complete"
  rm -rf "$ROOTFS" && mv "$ROOTFS.partial" "$ROOTFS"
  took debootstrap "$t"
else
  say "root filesystem present: $ROOTFS ($(du -sh "$ROOTFS" | cut -f1))"
fi
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  say "importing $ROOTFS as $BASE"
  t=$SECONDS
  tar -C "$ROOTFS" --exclude=./.kiln-complete -cf "$CACHE/rootfs-bookworm.tar" .
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$CACHE/rootfs-bookworm.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr"
  buildah commit --rm -q "$ctr" "$BASE" >/dev/null
  rm -f "$CACHE/rootfs-bookworm.tar"
  took "import" "$t"
else
  say "base image present: $BASE"
fi

# --- 3: the three images, one at a time ---------------------------------------------------
# The host's CA bundle is bind-mounted into the RUN steps (not copied into a layer), so
# pip reaches PyPI through a TLS-intercepting proxy when the host trusts it.
mounts=()
[ -f /etc/ssl/certs/ca-certificates.crt ] \
  && mounts=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
for image in operator trainer server; do
  say "buildah bud images/Dockerfile.$image -> localhost/kiln/$image:$TAG"
  t=$SECONDS
  log=$CACHE/build-$image.log
  buildah bud --layers --isolation="$ISOLATION" --network=host "${mounts[@]}" \
    --build-arg PYTHON_IMAGE="$BASE" -f "images/Dockerfile.$image" \
    -t "localhost/kiln/$image:$TAG" . >"$log" 2>&1 || { tail -30 "$log"; exit 1; }
  took "build $image" "$t"
done
say "images:"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | sed -E 's/^ +//; s/ +/ /g' \
  | grep -E "^localhost/(kiln-base:bookworm|kiln/(operator|trainer|server):$TAG) " | sed 's/^/    /'

# --- 4: the trainer once --------------------------------------------------------------------
# As in a pod: uid 65532, read-only root, emptyDir-like /tmp, no network; the dataset is
# mounted read-only and the model and report go to a host directory. --ulimit: podman's
# rootful defaults raise RLIMIT_NOFILE/NPROC, which needs CAP_SYS_RESOURCE; keep them at or
# under the caller's.
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
chown 65532:65532 "$out"
spec='{"model":"diabetes","estimator":"sklearn.ensemble.HistGradientBoostingRegressor",'
spec+='"params":{"max_iter":50},"dataset":{"uri":"file:///data/diabetes.csv","target":"target",'
spec+='"sensitiveColumn":"sex"},"evaluation":{"testSize":0.25,"seed":3},"output":{"uri":"file:///out"},'
spec+='"run":{"namespace":"ml","trainingJob":"diabetes","number":1}}'
say "podman run localhost/kiln/trainer:$TAG (examples/data/diabetes.csv, file:// output)"
t=$SECONDS
podman "${PODMAN_GLOBAL[@]}" run --rm --network=none --read-only --tmpfs /tmp \
  --ulimit "nofile=$(ulimit -n):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
  -v "$PWD/examples/data:/data:ro" -v "$out:/out" \
  -e KILN_TRAIN_SPEC="$spec" -e KILN_TERMINATION_LOG=/out/termination-log \
  "localhost/kiln/trainer:$TAG"
took "trainer run" "$t"
say "artifacts written by the trainer:"
(cd "$out" && find . -type f -printf '    %p  %s bytes\n' | sort)
say "done in $((SECONDS - T0))s"
