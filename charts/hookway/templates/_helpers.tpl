{{/* Common names and labels. */}}
{{- define "hookway.name" -}}hookway{{- end -}}

{{- define "hookway.fullname" -}}
{{- if contains "hookway" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-hookway" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "hookway.labels" -}}
app.kubernetes.io/name: hookway
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hookway.selector" -}}
app.kubernetes.io/name: hookway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hookway.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "hookway.rootNamespace" -}}
{{ .Values.rootNamespace | default .Release.Namespace }}
{{- end -}}

{{/* Names of the generated objects. */}}
{{- define "hookway.controller" -}}{{ include "hookway.fullname" . }}-controller{{- end -}}
{{- define "hookway.proxy" -}}{{ include "hookway.fullname" . }}-proxy{{- end -}}
{{- define "hookway.streamSecret" -}}{{ include "hookway.fullname" . }}-stream{{- end -}}

{{/* The hardened container security context shared by every container. */}}
{{- define "hookway.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
{{- if .bindLowPorts }}
  add: ["NET_BIND_SERVICE"]
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "hookway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}
