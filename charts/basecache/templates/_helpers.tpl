{{/*
Object names are fixed ("basecache-controller", "basecache-agent", ...): the chart installs cluster-wide
objects (CRDs, ClusterRoles, an admission policy), so one release per cluster is the only sensible use.
*/}}

{{- define "basecache.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Labels every object carries; selectors use only basecache.selectorLabels. */}}
{{- define "basecache.labels" -}}
app.kubernetes.io/name: basecache
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "basecache.controller.labels" -}}
{{ include "basecache.labels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "basecache.agent.labels" -}}
{{ include "basecache.labels" . }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "basecache.controller.selectorLabels" -}}
app.kubernetes.io/name: basecache
app.kubernetes.io/component: controller
{{- end }}

{{- define "basecache.agent.selectorLabels" -}}
app.kubernetes.io/name: basecache
app.kubernetes.io/component: agent
{{- end }}

{{- define "basecache.agent.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:basecache-agent
{{- end }}

{{- define "basecache.controller.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:basecache-controller
{{- end }}
