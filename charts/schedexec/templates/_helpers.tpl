{{- define "schedexec.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "schedexec.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "schedexec.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "schedexec.serviceAccountName" -}}
{{- default (include "schedexec.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The operator's permissions: exactly what schedexec.kube and Kopf's watches use. */}}
{{- define "schedexec.operatorRules" -}}
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions/status"]
  verbs: ["update"]
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# pods: watched (label-selected) to see why a run's pod waits; listed when the watch may lag a finished Job
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# events: posted on executions; listed (by pod uid) for a pod stuck before its volumes are mounted
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- if .Values.api.enabled }}
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions"]
  verbs: ["create"]
{{- end }}
{{- end -}}
