#!/usr/bin/env bash
# deploy/monitoring/basecache.rules.yaml is the one source of basecache's alerts. This copies it into the chart
# (charts/basecache/files/, rendered by templates/prometheusrule.yaml) and wraps it into the PrometheusRule
# deploy/monitoring/prometheus-rule.yaml. test/integration/alerts.test.ts fails while they differ; run this
# after changing a rule.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rules="$root/deploy/monitoring/basecache.rules.yaml"
mkdir -p "$root/charts/basecache/files"
cp "$rules" "$root/charts/basecache/files/basecache.rules.yaml"
{
  cat <<'HEAD'
# basecache's alerts as a PrometheusRule, for clusters that run the Prometheus Operator (its CRDs must be
# installed): kubectl apply -f deploy/monitoring/prometheus-rule.yaml. Generated from basecache.rules.yaml
# by hack/sync-rules.sh; do not edit by hand. The chart renders the same with metrics.prometheusRule.enabled.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: basecache
  namespace: basecache-system
  labels:
    app.kubernetes.io/name: basecache
spec:
HEAD
  grep -v '^#' "$rules" | sed 's/^/  /'
} > "$root/deploy/monitoring/prometheus-rule.yaml"
echo "sync-rules: copied the rules into charts/basecache/files/ and deploy/monitoring/prometheus-rule.yaml"
