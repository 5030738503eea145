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

{{- define "schedexec.api.serviceAccountName" -}}
{{- default (printf "%s-api" (include "schedexec.fullname" .)) .Values.api.serviceAccount.name -}}
{{- end -}}

{{/* The API's pods (mode deployment): a name of their own, so that no operator selector matches them. */}}
{{- define "schedexec.api.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-api
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "schedexec.api.tlsSecretName" -}}
{{- default (printf "%s-api-tls" (include "schedexec.fullname" .)) .Values.api.tls.secretName -}}
{{- end -}}

{{/* The volume `.` (a ServiceAccount token, its CA and namespace) where automounting would put it, for the one
     container that mounts it. */}}
{{- define "schedexec.tokenMount" -}}
- {name: {{ . }}, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
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
{{- if .Values.largeResults.enabled }}
# large results: read from the run pod's log, kept in a ConfigMap owned by the execution
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get"]
{{- end }}
{{- end -}}

{{/* The REST API's permissions: exactly what schedexec.api.kubeclient asks, and the policy's exemption. */}}
{{- define "schedexec.api.rules" -}}
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions"]
  verbs: ["create", "get", "list", "watch"]
# the admission policy lets the API name Secrets its callers may read: it asks that itself (SubjectAccessReview)
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions"]
  verbs: ["use-any-credentials"]
# results kept outside the status, named by status.resultRef
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end -}}

{{/* The API's container, the same in both modes. */}}
{{- define "schedexec.api.container" -}}
- name: api
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["api"]
  env:
    - {name: SCHEDEXEC_API_PORT, value: {{ .Values.api.port | int | quote }}}
    - {name: SCHEDEXEC_API_NAMESPACE, value: {{ .Values.api.namespace | quote }}}
    - {name: SCHEDEXEC_API_WORKSPACES, value: {{ .Values.api.workspaces | toJson | quote }}}
    - {name: SCHEDEXEC_API_COMPONENTS, value: {{ .Values.api.components | toJson | quote }}}
    - {name: SCHEDEXEC_API_MAX_BODY_BYTES, value: {{ .Values.api.maxBodyBytes | int | quote }}}
    - {name: SCHEDEXEC_API_TTL_SECONDS_AFTER_FINISHED, value: {{ .Values.api.ttlSecondsAfterFinished | int | quote }}}
    - {name: SCHEDEXEC_API_AUDIENCES, value: {{ .Values.api.audiences | toJson | quote }}}
    - {name: SCHEDEXEC_API_REVIEW_TTL_SECONDS, value: {{ .Values.api.reviewTtlSeconds | quote }}}
    - {name: SCHEDEXEC_API_REVIEWS_PER_SECOND_PER_CLIENT, value: {{ .Values.api.reviewsPerSecondPerClient | quote }}}
    - {name: SCHEDEXEC_API_REVIEW_BURST_PER_CLIENT, value: {{ .Values.api.reviewBurstPerClient | int | quote }}}
    {{- if .Values.api.plainHttp }}
    - {name: SCHEDEXEC_API_PLAIN_HTTP, value: "true"}
    {{- else }}
    - {name: SCHEDEXEC_API_TLS_CERT_FILE, value: /etc/schedexec/tls/tls.crt}
    - {name: SCHEDEXEC_API_TLS_KEY_FILE, value: /etc/schedexec/tls/tls.key}
    {{- end }}
  ports:
    - {name: api, containerPort: {{ .Values.api.port }}}
  readinessProbe:
    httpGet: {path: /readyz, port: api, scheme: {{ if .Values.api.plainHttp }}HTTP{{ else }}HTTPS{{ end }}}
    periodSeconds: 10
  livenessProbe:
    httpGet: {path: /livez, port: api, scheme: {{ if .Values.api.plainHttp }}HTTP{{ else }}HTTPS{{ end }}}
    periodSeconds: 20
    timeoutSeconds: 5
  resources: {{- toYaml .Values.api.resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: ["ALL"]}
  {{- if or (eq .Values.api.mode "sidecar") (not .Values.api.plainHttp) }}
  volumeMounts:
    {{- if eq .Values.api.mode "sidecar" }}
    {{- include "schedexec.tokenMount" "api-token" | nindent 4 }}
    {{- end }}
    {{- if not .Values.api.plainHttp }}
    - {name: api-tls, mountPath: /etc/schedexec/tls, readOnly: true}
    {{- end }}
  {{- end }}
{{- end -}}

{{- define "schedexec.api.tlsVolume" -}}
{{- if not .Values.api.plainHttp -}}
- name: api-tls
  secret: {secretName: {{ include "schedexec.api.tlsSecretName" . }}}
{{- end -}}
{{- end -}}
