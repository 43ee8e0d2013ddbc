#!/usr/bin/env bash
# Builds the pinned kube-apiserver, etcd, helm and cosign from their Go modules into a cache directory
# outside the repo, and prints that bin directory. A present binary is reused.
# `node` builds what a real node needs on top (kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, kubectl) in one `go build`, and rebuilds kube-apiserver there too if it lacks its version.
# Usage: hack/build-tools.sh [kube-apiserver|etcd|helm|kubectl|cosign|node ...]   (default: all, node included)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${BASECACHE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/basecache/tools}
bin="$cache/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION/bin"
mkdir -p "$bin"
staging_version="v0.${KUBERNETES_VERSION#v1.}"
log() { echo "build-tools: $*" >&2; }
# One build at a time per cache: a second caller (another test run, CI) waits here and then reuses the result.
exec 9>"$cache/.lock"
if ! flock -n 9; then
  log "waiting for another build-tools run to finish"
  flock 9
fi

# Binaries built from Go modules say v0.0.0-master: the version is stamped at link time, as Kubernetes'
# own hack/lib/version.sh does (both version packages; the build date is the release's, for stable output).
kube_ldflags() {
  local major=${KUBERNETES_VERSION#v} minor date
  minor=${major#*.}
  minor=${minor%%.*}
  major=${major%%.*}
  date=$(curl -fsS "$(go env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.info" | sed -nE 's/.*"Time": *"([^"]+)".*/\1/p')
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date:-1970-01-01T00:00:00Z}"
  done
  echo "$flags"
}

# NOTE: k8s.io/kubernetes replaces its staging modules with ./staging paths, which `go install mod@ver`
# refuses. A wrapper module that requires it and maps each staging module to its published version works.
# Builds commands under k8s.io/kubernetes/cmd in one `go build` (shared packages compile once) into $bin.
build_kube() { # $@ = command names
  local work out name
  work=$(mktemp -d)
  # A RETURN trap is global: clear it as it fires, or it fires again when the caller returns.
  trap 'rm -rf "$work"; trap - RETURN' RETURN
  local mod
  mod=$(curl -fsS "$(go env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod")
  {
    echo "module basecache.io/tools/kube"
    echo "go 1.25.0"
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo "replace ("
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' <<<"$mod" |
      awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$work/go.mod"
  {
    printf 'package tools\n\nimport (\n'
    for name in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$name"; done
    printf ')\n'
  } >"$work/tools.go"
  out="$work/out"
  mkdir -p "$out"
  local ldflags
  ldflags=$(kube_ldflags)
  (cd "$work" && go mod tidy >&2 && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/" "${@/#/k8s.io/kubernetes/cmd/}")
  for name in "$@"; do
    # Same file system as $bin: the rename is atomic, so a running test keeps its old binary intact.
    cp "$out/$name" "$bin/.$name.tmp"
    mv "$bin/.$name.tmp" "$bin/$name"
  done
}

# True when $1 in $bin is present and reports the pinned version.
kube_current() {
  [ -x "$bin/$1" ] || return 1
  local v
  v=$("$bin/$1" --version 2>/dev/null || "$bin/$1" version --client 2>/dev/null || true)
  [[ $v == *"$KUBERNETES_VERSION"* ]]
}

build_node() {
  local need=() name
  for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    kube_current "$name" || need+=("$name")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  log "building ${need[*]} in one go build (first build takes several minutes; cached in $bin)"
  build_kube "${need[@]}"
}

build_etcd() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  cat >"$work/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  printf 'module basecache.io/tools/etcd\n\ngo 1.25.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$work/go.mod"
  (cd "$work" && go mod tidy >&2 && CGO_ENABLED=0 go build -trimpath -o "$bin/etcd.tmp" .)
  mv "$bin/etcd.tmp" "$bin/etcd"
}

build_helm() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && GOBIN="$work" CGO_ENABLED=0 go install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2)
  mv "$work/helm" "$bin/helm"
}

# cosign is named by its version: the cache dir is named by the others', so a new pin must not reuse an old build.
build_cosign() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && GOBIN="$work" CGO_ENABLED=0 go install -trimpath "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION" >&2)
  mv "$work/cosign" "$bin/cosign-$COSIGN_VERSION"
  ln -sfn "cosign-$COSIGN_VERSION" "$bin/.cosign.tmp"
  mv -T "$bin/.cosign.tmp" "$bin/cosign"
}

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(etcd kube-apiserver helm cosign node)
for tool in "${wanted[@]}"; do
  if [ "$tool" = node ]; then
    start=$SECONDS
    build_node
    [ $((SECONDS - start)) -lt 2 ] || log "built the node's binaries in $((SECONDS - start))s"
    continue
  fi
  if [ "$tool" = cosign ]; then
    [ -x "$bin/cosign-$COSIGN_VERSION" ] && [ "$(readlink "$bin/cosign" 2>/dev/null)" = "cosign-$COSIGN_VERSION" ] && continue
  elif [ -x "$bin/$tool" ]; then
    continue
  fi
  log "building $tool (first build takes several minutes; cached in $bin)"
  start=$SECONDS
  case $tool in
    etcd) build_etcd ;;
    helm) build_helm ;;
    cosign) build_cosign ;;
    kube-apiserver|kubectl) build_kube "$tool" ;;
    *) echo "build-tools: unknown tool \"$tool\"" >&2; exit 2 ;;
  esac
  log "built $tool in $((SECONDS - start))s"
done
echo "$bin"
