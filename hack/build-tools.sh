#!/usr/bin/env bash
# Builds the pinned kube-apiserver, etcd and helm from their Go modules into a cache directory
# outside the repo, and prints that bin directory. A present binary is reused.
# Usage: hack/build-tools.sh [kube-apiserver|etcd|helm|kubectl ...]   (default: all)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${BASECACHE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/basecache/tools}
bin="$cache/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION/bin"
mkdir -p "$bin"
staging_version="v0.${KUBERNETES_VERSION#v1.}"
log() { echo "build-tools: $*" >&2; }

# NOTE: k8s.io/kubernetes replaces its staging modules with ./staging paths, which `go install mod@ver`
# refuses. A wrapper module that requires it and maps each staging module to its published version works.
build_kube() { # $1 = command name under k8s.io/kubernetes/cmd
  local name=$1 work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
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
  printf 'package tools\n\nimport _ "k8s.io/kubernetes/cmd/%s"\n' "$name" >"$work/tools.go"
  (cd "$work" && go mod tidy >&2 && CGO_ENABLED=0 go build -trimpath -o "$bin/$name.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$bin/$name.tmp" "$bin/$name"
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

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(etcd kube-apiserver helm)
for tool in "${wanted[@]}"; do
  if [ -x "$bin/$tool" ]; then continue; fi
  log "building $tool (first build takes several minutes; cached in $bin)"
  start=$SECONDS
  case $tool in
    etcd) build_etcd ;;
    helm) build_helm ;;
    kube-apiserver|kubectl) build_kube "$tool" ;;
    *) echo "build-tools: unknown tool \"$tool\"" >&2; exit 2 ;;
  esac
  log "built $tool in $((SECONDS - start))s"
done
echo "$bin"
