#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl and etcd
# from the published Go modules pinned in tools/k8s/go.mod, into ~/.cache/kiln/k8s-v<ver>/bin.
# A machine builds once: the script exits at once when every binary is already there.
set -euo pipefail
cd "$(dirname "$0")/../tools/k8s"
version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit} $1=="require" && $2=="k8s.io/kubernetes"{print $3; exit}' go.mod)
out=${KILN_CACHE:-$HOME/.cache/kiln}/k8s-${version}/bin
bins=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl etcd)
missing=0
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then echo "==> Kubernetes $version binaries cached in $out"; exit 0; fi

command -v go >/dev/null || { echo "go toolchain not found (install Go >= 1.25)"; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "==> building Kubernetes $version and etcd from Go modules into $out (cold: tens of minutes on 2 cores)"
start=$(date +%s)
# The version stamp makes `kubectl version` and the apiserver's /version report the release.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$version" | cut -d. -f2) -X k8s.io/client-go/pkg/version.gitVersion=${version} -X k8s.io/component-base/version.gitTreeState=clean"
go mod download
(go build -v -trimpath -ldflags="$ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3 2>"$tmp/build.log"; echo $? >"$tmp/rc") &
# Progress: `go build -v` names each package as it compiles; report the count periodically.
while [ ! -f "$tmp/rc" ]; do
  sleep 20
  n=$(grep -c . "$tmp/build.log" 2>/dev/null || true)
  echo "    ... $((($(date +%s) - start))) s, ${n} packages compiled"
done
if [ "$(cat "$tmp/rc")" != 0 ]; then grep -v '^[a-z0-9./_-]*$' "$tmp/build.log" | tail -40; echo "build failed"; exit 1; fi
[ -x "$tmp/server" ] && mv "$tmp/server" "$tmp/etcd"
[ -x "$tmp/v3" ] && mv "$tmp/v3" "$tmp/etcd"
for b in "${bins[@]}"; do install -m 0755 "$tmp/$b" "$out/$b"; done
echo "==> built in $(($(date +%s) - start)) s: $(ls "$out" | tr '\n' ' ')"
