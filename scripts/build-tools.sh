#!/usr/bin/env bash
# Builds the cluster's Go programs from their published modules, pinned by the tools
# modules in tools/, into ~/.cache/kiln/<set>-<version>/bin. A machine builds each set
# once: a set whose binaries are all present is skipped at once.
#   tools/k8s:        kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
#                     kubelet, kubectl (k8s.io/kubernetes) and etcd (the version kubernetes
#                     requires)
#   containerd, registry (distribution), coredns: `go install <module>@<version>` with the
#                     versions pinned below (their own go.mod decides the dependencies, as
#                     in their releases)
#   tools/prometheus: prometheus (Debian's package lacks the Kubernetes service discovery)
#                     and promtool (checks the alerting rules and dashboard PromQL in tests)
#   tools/kstatus:    kstatus, a tiny CLI around sigs.k8s.io/cli-utils/pkg/kstatus/status
#                     (the readiness rules of Flux and cli-utils; used by the GitOps tests)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${KILN_CACHE:-$HOME/.cache/kiln}
command -v go >/dev/null || { echo "go toolchain not found (install Go >= 1.25)"; exit 1; }

module_version() { awk -v m="$2" '$1==m{print $2; exit} $1=="require" && $2==m{print $3; exit}' "$1/go.mod"; }

# build <set> <module dir> <version> <ldflags> <binary=package>...
build() {
  local set=$1 dir=$2 version=$3 ldflags=$4; shift 4
  local out="$cache/$set-$version/bin" missing=() pkgs=() spec
  for spec in "$@"; do
    [ -x "$out/${spec%%=*}" ] || missing+=("${spec%%=*}")
    pkgs+=("${spec#*=}")
  done
  if [ ${#missing[@]} -eq 0 ]; then echo "==> $set $version: cached in $out"; return; fi
  echo "==> building $set $version (${missing[*]}) from Go modules into $out"
  echo "    (cold: about 10 minutes for Kubernetes on 2 cores; progress below)"
  mkdir -p "$out"
  local tmp start rc
  tmp=$(mktemp -d); start=$(date +%s)
  (cd "$dir" && go mod download)
  # `go build -v` names each package it compiles; report the count while it runs.
  (cd "$dir" && go build -v -trimpath -ldflags="$ldflags" -o "$tmp/" "${pkgs[@]}" 2>"$tmp/log"; echo $? >"$tmp/rc") &
  while [ ! -f "$tmp/rc" ]; do
    sleep 15
    echo "    ... $(($(date +%s) - start)) s, $(grep -c . "$tmp/log" || true) packages compiled"
  done
  rc=$(cat "$tmp/rc")
  if [ "$rc" != 0 ]; then grep -v '^[A-Za-z0-9./_~-]*$' "$tmp/log" | tail -40; rm -rf "$tmp"; echo "build of $set failed"; exit 1; fi
  for spec in "$@"; do
    local bin=${spec%%=*} pkg=${spec#*=} built
    built=$(basename "$pkg"); [[ $built =~ ^v[0-9]+$ ]] && built=$(basename "$(dirname "$pkg")")
    install -m 0755 "$tmp/$built" "$out/$bin"
  done
  rm -rf "$tmp"
  echo "==> $set built in $(($(date +%s) - start)) s"
}

k8s_version=$(module_version "$root/tools/k8s" k8s.io/kubernetes)
minor=$(echo "$k8s_version" | cut -d. -f2)
# The version stamp makes `kubectl version` and the apiserver's /version report the release.
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
build k8s "$root/tools/k8s" "$k8s_version" "$k8s_ldflags" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
  kube-proxy=k8s.io/kubernetes/cmd/kube-proxy \
  kubelet=k8s.io/kubernetes/cmd/kubelet \
  kubectl=k8s.io/kubernetes/cmd/kubectl \
  etcd=go.etcd.io/etcd/server/v3

prom_version=$(module_version "$root/tools/prometheus" github.com/prometheus/prometheus)
build prometheus "$root/tools/prometheus" "$prom_version" \
  "-s -w" \
  prometheus=github.com/prometheus/prometheus/cmd/prometheus \
  promtool=github.com/prometheus/prometheus/cmd/promtool

kstatus_version=$(module_version "$root/tools/kstatus" sigs.k8s.io/cli-utils)
build kstatus "$root/tools/kstatus" "$kstatus_version" "-s -w" \
  kstatus=kiln.dev/tools/kstatus

# goinstall <set> <version> <tags> <binary=package@version>...: a released program built
# from its own module (go install honours the module's go.mod exactly, like its release).
goinstall() {
  local set=$1 version=$2 tags=$3; shift 3
  local out="$cache/$set-$version/bin" missing=() spec start
  for spec in "$@"; do [ -x "$out/${spec%%=*}" ] || missing+=("${spec#*=}"); done
  if [ ${#missing[@]} -eq 0 ]; then echo "==> $set $version: cached in $out"; return; fi
  echo "==> building $set $version from its Go module into $out"
  start=$(date +%s)
  mkdir -p "$out"
  GOBIN="$out" GOFLAGS= go install -trimpath -ldflags="-s -w" ${tags:+-tags "$tags"} "${missing[@]}" \
    || { echo "build of $set failed"; exit 1; }
  echo "==> $set built in $(($(date +%s) - start)) s"
}

# The local cluster's nodes: containerd (CRI) with its runc shim; runc and the CNI plugins
# come from Debian (scripts/install-system-deps.sh).
containerd_version=v2.4.2
goinstall containerd "$containerd_version" no_btrfs \
  containerd=github.com/containerd/containerd/v2/cmd/containerd@$containerd_version \
  containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$containerd_version \
  ctr=github.com/containerd/containerd/v2/cmd/ctr@$containerd_version
# The image registry pods pull from (on loopback) and the cluster's DNS.
registry_version=v3.1.2
goinstall registry "$registry_version" "" \
  registry=github.com/distribution/distribution/v3/cmd/registry@$registry_version
coredns_version=v1.15.0
goinstall coredns "$coredns_version" "" coredns=github.com/coredns/coredns@$coredns_version
