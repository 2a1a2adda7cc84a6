#!/usr/bin/env bash
# Builds every image the local cluster runs, without Docker, into the local containers
# storage (/var/lib/containers), runs the trainer image once on the example dataset, and
# pushes them all to the loopback registry when it answers (scripts/push-images.sh). See
# docs/install.md, "Building the images without Docker".
#
#   1. debootstrap a minimal Debian bookworm (python3 3.11, pip, ca-certificates) into
#      $KILN_IMAGES_CACHE (default ~/.cache/kiln/images), once;
#   2. import it as localhost/kiln-base:bookworm (buildah from scratch + add + commit), once,
#      and name it as the public images pods ask for: localhost/python:3.11-slim and
#      localhost/python:3.11 (CMD python3), localhost/debian:bookworm and
#      localhost/debian:latest (CMD bash);
#   3. localhost/kiln/pause:3.10 (and :3.10.2): upstream's pause.c from the k8s.io/kubernetes
#      Go module, compiled statically with gcc, alone in `buildah from scratch`;
#   4. localhost/busybox:latest (and :<Debian's version>): Debian's busybox-static with its
#      applet symlinks in /bin, alone in `buildah from scratch`;
#   5. buildah bud images/Dockerfile.{operator,trainer,server} with
#      --build-arg PYTHON_IMAGE=localhost/kiln-base:bookworm (the Dockerfiles' default stays
#      python:3.11.11-slim-bookworm), one at a time, layers cached, tagged
#      localhost/kiln/<name>:<version in pyproject.toml>; then every module of each program
#      is imported inside its image;
#   6. podman run the trainer (read-only root, tmpfs /tmp, no network) on examples/data;
#   7. scripts/push-images.sh, when the registry ($KILN_REGISTRY, default 127.0.0.1:5000)
#      answers; skipped otherwise.
#
# Idempotent: a second run reuses the root filesystem, the base image, the pause and busybox
# images (rebuilt only when their input changes) and the cached layers; a source change
# rebuilds only the layer that installs Kiln's wheel (its requirements have their own layer).
# Needs root (debootstrap, rootful storage), Debian's apt (installs buildah, podman, runc,
# debootstrap, busybox-static and gcc when missing) and PyPI for pip inside the build.
# Environment:
#   KILN_IMAGES_CACHE     where the root filesystem goes (default ~/.cache/kiln/images)
#   KILN_DEBIAN_MIRROR    debootstrap mirror (default http://deb.debian.org/debian)
#   KILN_IMAGE_TAG        tag of the three images (default: the version in pyproject.toml)
#   KILN_REBUILD_BASE=1   debootstrap and import the base again
#   KILN_BUILD_ISOLATION  buildah --isolation (default chroot: RUN steps need no cgroups)
#   KILN_PODMAN_GLOBAL    podman global flags for the runs (default: runc, cgroupfs)
#   KILN_PUSH=0           do not push, even when the registry answers
#   KILN_REGISTRY, KILN_PUSH_COMPRESSION   passed to scripts/push-images.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${KILN_IMAGES_CACHE:-$HOME/.cache/kiln/images}
MIRROR=${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
TAG=${KILN_IMAGE_TAG:-$VERSION}
export KILN_IMAGE_TAG=$TAG
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
for pkg in buildah podman runc debootstrap busybox-static gcc libc6-dev; do
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
# libgomp1: LightGBM's OpenMP runtime (XGBoost and scikit-learn bundle their own). The
# marker records the package list, so changing it rebuilds the root filesystem and base.
PACKAGES=python3,python3-pip,ca-certificates,libgomp1
if [ "$(cat "$ROOTFS/.kiln-complete" 2>/dev/null)" != "$PACKAGES" ]; then
  [ -e "$ROOTFS" ] && buildah rmi -f "$BASE" >/dev/null 2>&1 || true
  say "debootstrap bookworm (minbase + ${PACKAGES//,/ }) into $ROOTFS"
  t=$SECONDS
  rm -rf "$ROOTFS.partial"
  debootstrap --variant=minbase --include="$PACKAGES" \
    bookworm "$ROOTFS.partial" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log"; exit 1; }
  # What python:3.11-slim does not carry either: apt lists and .debs, docs, man pages,
  # locales. Without EXTERNALLY-MANAGED (PEP 668), `pip install` in the Dockerfiles installs
  # into /usr/local as it does on the python image.
  rm -rf "$ROOTFS.partial"/var/cache/apt/archives/*.deb "$ROOTFS.partial"/var/lib/apt/lists/* \
    "$ROOTFS.partial"/usr/share/doc/* "$ROOTFS.partial"/usr/share/man/* "$ROOTFS.partial"/usr/share/locale/*
  rm -f "$ROOTFS.partial"/usr/lib/python3.*/EXTERNALLY-MANAGED
  echo "$PACKAGES" >"$ROOTFS.partial/.kiln-complete"
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

# The base under the names of the public images pods and manifests use. python:* is the
# base itself (a second name, same image id); debian:* differs only by its CMD, committed
# once per base image (the label records which).
for name in localhost/python:3.11-slim localhost/python:3.11; do buildah tag "$BASE" "$name"; done
base_id=$(buildah inspect --type image --format '{{.FromImageID}}' "$BASE")
image_label() { buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }
if [ "$(image_label localhost/debian:bookworm org.kiln.base)" != "$base_id" ]; then
  say "committing localhost/debian:bookworm (the base, CMD bash)"
  ctr=$(buildah from --pull=never "$BASE")
  buildah config --cmd bash --label "org.kiln.base=$base_id" "$ctr"
  buildah commit --rm -q "$ctr" localhost/debian:bookworm >/dev/null
fi
buildah tag localhost/debian:bookworm localhost/debian:latest

# --- the pause image --------------------------------------------------------------------
# Upstream's pause.c (build/pause/linux in the k8s.io/kubernetes module that tools/k8s pins),
# compiled as upstream's Makefile does (-Os -static), uid 65535, ENTRYPOINT /pause.
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' tools/k8s/go.mod)
GOMODCACHE=${GOMODCACHE:-$(go env GOMODCACHE 2>/dev/null || echo "$HOME/go/pkg/mod")}
PAUSE_TAG=$(awk '$1 == "TAG" && $2 == "?=" {print $3}' \
  "$GOMODCACHE/k8s.io/kubernetes@$K8S_VERSION/build/pause/Makefile" 2>/dev/null || true)
pause_c=$GOMODCACHE/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c
if [ ! -f "$pause_c" ]; then
  say "downloading k8s.io/kubernetes@$K8S_VERSION (go mod download in tools/k8s) for pause.c"
  (cd tools/k8s && go mod download "k8s.io/kubernetes@$K8S_VERSION")
  PAUSE_TAG=$(awk '$1 == "TAG" && $2 == "?=" {print $3}' "$(dirname "$pause_c")/../Makefile")
fi
PAUSE_TAG=${PAUSE_TAG:-3.10.2}
pause_key="$K8S_VERSION $(sha256sum "$pause_c" | cut -c1-64) $(gcc -dumpfullversion)"
if [ "$(image_label localhost/kiln/pause:3.10 org.kiln.source)" != "$pause_key" ]; then
  say "pause.c ($K8S_VERSION) -> localhost/kiln/pause:3.10 (+ :$PAUSE_TAG)"
  mkdir -p "$CACHE/pause"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG-kiln" -o "$CACHE/pause/pause" "$pause_c"
  strip "$CACHE/pause/pause"
  ctr=$(buildah from scratch)
  buildah copy --chown 0:0 "$ctr" "$CACHE/pause/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 \
    --label "org.kiln.source=$pause_key" --label "org.kiln.version=$PAUSE_TAG" "$ctr"
  buildah commit --rm -q "$ctr" localhost/kiln/pause:3.10 >/dev/null
fi
buildah tag localhost/kiln/pause:3.10 "localhost/kiln/pause:$PAUSE_TAG"

# --- busybox ------------------------------------------------------------------------------
# Debian's static busybox as /bin/busybox, a symlink per applet beside it, root and nobody
# in /etc/passwd, a sticky /tmp; CMD sh (as the busybox image on Docker Hub).
BUSYBOX_VERSION=$(/bin/busybox 2>/dev/null | sed -n '1s/^BusyBox v\([0-9]*\.[0-9]*\).*/\1/p')
busybox_key="$(sha256sum /bin/busybox | cut -c1-64) layout-1"
if [ "$(image_label localhost/busybox:latest org.kiln.source)" != "$busybox_key" ]; then
  say "busybox-static $BUSYBOX_VERSION -> localhost/busybox:latest (+ :$BUSYBOX_VERSION)"
  stage=$CACHE/busybox-rootfs
  rm -rf "$stage" && mkdir -p "$stage"/{bin,etc,root,home,var,tmp,usr/bin,usr/sbin,sbin}
  cp /bin/busybox "$stage/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
  done
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/home:/bin/false' \
    >"$stage/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$stage/etc/group"
  chmod 1777 "$stage/tmp"
  chmod 700 "$stage/root"
  tar -C "$stage" --owner=0 --group=0 --numeric-owner -cf "$CACHE/busybox.tar" .
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$CACHE/busybox.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd sh --label "org.kiln.source=$busybox_key" --label "org.kiln.version=$BUSYBOX_VERSION" "$ctr"
  buildah commit --rm -q "$ctr" localhost/busybox:latest >/dev/null
  rm -rf "$stage" "$CACHE/busybox.tar"
fi
buildah tag localhost/busybox:latest "localhost/busybox:$BUSYBOX_VERSION"

# --- Kiln's three images, one at a time ---------------------------------------------------
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
# Every module of each program imports in its image: the extras carry what the code needs.
check_imports() {
  podman "${PODMAN_GLOBAL[@]}" run --rm --network=none --read-only --tmpfs /tmp \
    --ulimit "nofile=$(ulimit -n):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
    --entrypoint python3 "localhost/kiln/$1:$TAG" -c '
import importlib, pkgutil, sys
names = []
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    names.append(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
        importlib.import_module(info.name)
        names.append(info.name)
print(len(names), "modules")' "${@:2}"
}
for spec in "operator kiln.operator kiln.handlers kiln.k8s kiln.store" \
  "trainer kiln.trainer kiln.store" "server kiln.server kiln.store"; do
  read -r -a args <<<"$spec"
  t=$SECONDS
  imported=$(check_imports "${args[@]}") || { say "import check failed in localhost/kiln/${args[0]}:$TAG"; exit 1; }
  say "localhost/kiln/${args[0]}:$TAG imports ${args[*]:1}: $imported ($((SECONDS - t))s)"
done

say "images:"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | sed -E 's/^ +//; s/ +/ /g' \
  | grep -E "^localhost/(kiln-base:bookworm|kiln/(operator|trainer|server):$TAG|kiln/pause:3.10|busybox:latest|python:3.11-slim|debian:bookworm) " \
  | sed 's/^/    /'

# --- the trainer once --------------------------------------------------------------------
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

# --- push -------------------------------------------------------------------------------
if [ "${KILN_PUSH:-1}" != 0 ]; then
  KILN_PUSH_OPTIONAL=1 scripts/push-images.sh
fi
say "done in $((SECONDS - T0))s"
