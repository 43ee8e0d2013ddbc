#!/usr/bin/env bash
# Builds the basecache image with buildah from the Containerfile and saves it as an OCI archive in a cache
# outside the repo (default ~/.cache/basecache/images), keyed by a hash of what goes into it; a present
# archive is reused, so a second run takes seconds. The base is the stand-in for node:20-slim from
# hack/image/build-base.sh (built first if needed), or BASECACHE_BASE_IMAGE where a public base can be pulled.
# The build machine's CA reaches `npm ci` only as the build secret `build-ca` (see Containerfile).
# Prints two lines, "base <archive|-> <name>" and "app <archive> <name>"; the app's name is
# localhost/basecache:<version in package.json>.
# Usage: hack/build-image.sh        (root; needs buildah, and debootstrap for the stand-in)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${BASECACHE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/basecache/images}
log() { echo "build-image: $*" >&2; }
mkdir -p "$cache"

# One build at a time per cache (the image test and the node harness may both ask); bounded wait.
exec 9>"$cache/.lock"
flock -w 1200 9 || { log "another build held $cache/.lock for 20 minutes; giving up"; exit 1; }

if [ -n "${BASECACHE_BASE_IMAGE:-}" ]; then
  base_archive=- base_name=$BASECACHE_BASE_IMAGE
else
  read -r base_archive base_name < <("$root/hack/image/build-base.sh")
fi

version=$(node -p 'require(process.argv[1]).version' "$root/package.json")
name="localhost/basecache:$version"
# The key: every file the Containerfile copies or that shapes the build, by path and content, plus the base.
key=$(
  cd "$root"
  {
    echo "base $base_name"
    find Containerfile .dockerignore package.json package-lock.json tsconfig*.json src bin hack/build-image.sh \
      -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-12
)
archive="$cache/basecache-$version-$key.oci.tar"
if [ -s "$archive" ]; then
  log "cache hit: $archive"
  printf 'base %s %s\napp %s %s\n' "$base_archive" "$base_name" "$archive" "$name"
  exit 0
fi
command -v buildah >/dev/null || { log "needs buildah on PATH"; exit 1; }

# The base in buildah's store under its name (an archive from an earlier machine is loaded back).
if [ "$base_archive" != - ] && ! buildah inspect --type image "$base_name" >/dev/null 2>&1; then
  id=$(buildah pull --quiet "oci-archive:$base_archive")
  buildah tag "$id" "$base_name"
fi

secret=()
for ca in "${BASECACHE_BUILD_CA:-}" "${NODE_EXTRA_CA_CERTS:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$ca" ] && [ -s "$ca" ]; then secret=(--secret "id=build-ca,src=$ca"); break; fi
done

old=$(buildah inspect --type image --format '{{.FromImageID}}' "$name" 2>/dev/null || true)
log "building $name on $base_name (about 2 minutes cold)"
start=$SECONDS
pull=--pull=never
[ "$base_archive" = - ] && pull=--pull=missing
buildah build "$pull" -f "$root/Containerfile" --build-arg "BASE_IMAGE=$base_name" "${secret[@]}" \
  -t "$name" "$root" >"$cache/last-build.log" 2>&1 || { tail -30 "$cache/last-build.log" >&2; log "build failed"; exit 1; }
buildah push --quiet "$name" "oci-archive:$archive.tmp:$name" >/dev/null
mv "$archive.tmp" "$archive"
# The image this name pointed at before, if nothing else uses it (dangling images would pile up).
new=$(buildah inspect --type image --format '{{.FromImageID}}' "$name")
if [ -n "$old" ] && [ "$old" != "$new" ]; then buildah rmi "$old" >/dev/null 2>&1 || true; fi
# Older archives of the app (other keys) beyond the newest three go; the lock keeps writers out meanwhile.
ls -1t "$cache"/basecache-*.oci.tar 2>/dev/null | tail -n +4 | while read -r stale; do rm -f "$stale"; done
log "built $name in $((SECONDS - start))s: $archive"
printf 'base %s %s\napp %s %s\n' "$base_archive" "$base_name" "$archive" "$name"
