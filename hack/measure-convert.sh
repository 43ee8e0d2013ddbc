#!/usr/bin/env bash
# Measures what `qemu-img convert -O raw` needs for legitimate images, to size the limits convert runs under
# (src/core/convert-limits.ts, docs/design/2026-12-02-convert-limits.md). For each virtual size it builds a raw
# disk with incompressible data spread over it (the rest sparse), converts it to qcow2 and to a streamOptimized
# VMDK (not measured), then measures the conversion back to raw exactly as the pipeline runs it: peak address
# space (VmPeak, what prlimit --as bounds), peak RSS (VmHWM), CPU seconds (user+sys) and wall seconds.
#
# Usage: hack/measure-convert.sh [WORKDIR]   (default: a temp dir under /var/tmp; needs ~12 GiB free)
# Env:   SIZES="2:1 20:3"  pairs of virtual GiB : GiB of data.
set -euo pipefail

work="${1:-$(mktemp -d /var/tmp/basecache-measure-XXXXXX)}"
sizes="${SIZES:-2:1 20:3}"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
echo "qemu-img: $(qemu-img --version | head -1); cores: $(nproc); workdir: $work"
printf '%-8s %-6s %-16s %10s %10s %8s %8s\n' virtual data format vmpeak_mib hwm_mib cpu_s wall_s

# Samples VmPeak and VmHWM of PID until it exits; prints "peakKiB hwmKiB".
sample() {
  local pid=$1 peak=0 hwm=0 p h
  while [ -r "/proc/$pid/status" ]; do
    p=$(awk '/^VmPeak:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    h=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$p" ] && [ "$p" -gt "$peak" ] && peak=$p
    [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
    sleep 0.1
  done
  echo "$peak $hwm"
}

for pair in $sizes; do
  vgib=${pair%%:*}
  dgib=${pair##*:}
  raw="$work/src-${vgib}g.raw"
  rm -f "$raw"
  truncate -s "${vgib}G" "$raw"
  # Data in 64 MiB runs spread evenly over the disk, as an installed OS spreads its files.
  runs=$((dgib * 16))
  stride=$((vgib * 16 / runs))
  for ((i = 0; i < runs; i++)); do
    dd if=/dev/urandom of="$raw" bs=64M count=1 seek=$((i * stride)) conv=notrunc status=none
  done
  for fmt in qcow2 vmdk-stream; do
    case $fmt in
      qcow2) img="$work/img.qcow2"; qemu-img convert -q -f raw -O qcow2 "$raw" "$img"; f=qcow2 ;;
      vmdk-stream) img="$work/img.vmdk"; qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized "$raw" "$img"; f=vmdk ;;
    esac
    out="$work/out.raw"
    rm -f "$out"
    # MALLOC_ARENA_MAX=2 as the pipeline sets it: glibc's per-thread arenas otherwise reserve 64 MiB each.
    MALLOC_ARENA_MAX=2 /usr/bin/time -f '%U %S %e' -o "$work/time" qemu-img convert -f "$f" -O raw -t none -W "$img" "$out" &
    tpid=$!
    sleep 0.05
    qpid=$(pgrep -P "$tpid" qemu-img || true)
    read -r peak hwm < <(sample "${qpid:-$tpid}")
    wait "$tpid"
    read -r user sys wall < "$work/time"
    printf '%-8s %-6s %-16s %10d %10d %8.1f %8.1f\n' "${vgib}G" "${dgib}G" "$fmt" $((peak / 1024)) $((hwm / 1024)) "$(echo "$user + $sys" | bc)" "$wall"
    qemu-img compare -q -f raw -F raw "$raw" "$out" || echo "  content differs!"
    rm -f "$img" "$out"
  done
  rm -f "$raw"
done
