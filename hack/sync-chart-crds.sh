#!/usr/bin/env bash
# Copies crds/ into the Helm chart (charts/basecache/crds/), which Helm installs before the templates.
# test/integration/chart.test.ts fails while the two differ; run this after changing a CRD.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rm -f "$root"/charts/basecache/crds/*.yaml
cp "$root"/crds/*.yaml "$root/charts/basecache/crds/"
echo "sync-chart-crds: copied $(ls "$root"/crds/*.yaml | wc -l) CRD files into charts/basecache/crds/"
