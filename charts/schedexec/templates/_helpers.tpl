{{- define "schedexec.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{/* The recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/) of
     an object of the operator; schedexec.componentLabels for another component's. */}}
{{- define "schedexec.labels" -}}
{{ include "schedexec.componentLabels" (list . "operator") }}
{{- end -}}

{{/* The recommended labels of an object of one component, (list $ COMPONENT): operator, api, admission (the
     admission policies), crd, user-roles (the aggregated ClusterRoles), test (the `helm test` hook). */}}
{{- define "schedexec.componentLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/part-of: schedexec
app.kubernetes.io/managed-by: {{ $.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version }}
{{- end -}}

{{/* A pod template's labels, (list $ SELECTOR_LABELS COMPONENT): podLabels under the selector's and the component
     label (those win: a podLabels entry cannot take a pod out of its Deployment). */}}
{{- define "schedexec.podLabels" -}}
{{- $ := index . 0 -}}
{{- $own := merge (index . 1 | fromYaml) (dict "app.kubernetes.io/component" (index . 2)) -}}
{{- toYaml (merge $own (deepCopy ($.Values.podLabels | default dict))) -}}
{{- end -}}

{{/* The pod-level fields both Deployments share: pull secrets, priority class, placement. */}}
{{- define "schedexec.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
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

{{/* The operator's permissions: exactly what schedexec.kube, watches.py and leader.py call (the table of each
     verb and the code that needs it: docs/security.md). */}}
{{- define "schedexec.operatorRules" -}}
# watches.stream lists and watches; Reconciler.refresh gets; Cluster.delete_execution deletes (TTL)
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions"]
  verbs: ["get", "list", "watch", "delete"]
# Cluster.write_status
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions/status"]
  verbs: ["update"]
# a run's Job names its execution as owner with blockOwnerDeletion, which the API server allows only to who may
# update the owner's finalizers
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions/finalizers"]
  verbs: ["update"]
# watches.stream (label-selected); Cluster.get_job, create_job, delete_job
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
# XSOAR integration contexts: reconciler.keep_context creates, or replaces, an execution's context Secret (never
# reads one); the operator-secrets admission policy lets it write only Secrets of type schedexec.io/xsoar-context
# named `<execution>-<tag>-xsoar-context` and owned by a ScheduledExecution
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "update"]
{{- if .Values.largeResults.enabled }}
# large results: read from the run pod's log (Cluster.pod_log), kept in a ConfigMap owned by the execution
# (reconciler.keep_result: created only, never read back by the operator)
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
{{- end }}
{{- end -}}

{{/* The REST API's permissions that need no namespace: its cache follows executions everywhere (watches.stream
     through api.kubeclient), and it reviews its callers' tokens and access. */}}
{{- define "schedexec.api.clusterRules" -}}
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end -}}

{{/* The REST API's powers in the namespaces it creates executions in (schedexec.api.namespaces). */}}
{{- define "schedexec.api.namespaceRules" -}}
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions"]
  verbs: ["create"]
# the admission policy lets the API name Secrets its callers may read: it asks that itself (SubjectAccessReview)
- apiGroups: ["schedexec.io"]
  resources: ["scheduledexecutions"]
  verbs: ["use-any-credentials"]
# an elastic.io request's credentials, in an ephemeral Secret owned by its execution (create only: the API
# cannot read a Secret back; the apiSecrets admission policy lets it create Opaque ones only)
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
# results kept outside the status, named by status.resultRef
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
{{- end -}}

{{/* The namespaces the API creates executions in, as a JSON list; empty: every namespace (a ClusterRoleBinding). */}}
{{- define "schedexec.api.namespaces" -}}
{{- if .Values.api.namespaces -}}{{ toJson .Values.api.namespaces }}
{{- else if not .Values.rbac.clusterWide -}}{{ toJson .Values.watchNamespaces }}
{{- else -}}[]{{- end -}}
{{- end -}}

{{- define "schedexec.api.idempotencySecretName" -}}
{{ .Values.api.idempotencyKeySecret | default (printf "%s-api-idempotency" (include "schedexec.fullname" .)) }}
{{- end -}}

{{/* The NetworkPolicy egress of both pods: the API server and DNS, nothing else. */}}
{{- define "schedexec.egress" -}}
- ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  to:
    {{- range .Values.networkPolicy.apiServer.cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
- ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
  {{- with .Values.networkPolicy.dnsTo }}
  to: {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The runner image whose receiver runs beside each run of an elastic.io component: operator.elasticioReceiverImage,
     else the runner next to the operator image (same registry and tag). */}}
{{- define "schedexec.elasticioReceiverImage" -}}
{{- .Values.operator.elasticioReceiverImage | default (printf "%s/runner:%s" (dir .Values.image.repository) (.Values.image.tag | default .Chart.AppVersion)) -}}
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
    - {name: SCHEDEXEC_API_IDEMPOTENCY_KEY_FILE, value: /etc/schedexec/idempotency/key}
    - {name: SCHEDEXEC_API_TRUSTED_PROXIES, value: {{ .Values.api.trustedProxies | toJson | quote }}}
    - {name: SCHEDEXEC_API_HEADER_TIMEOUT_SECONDS, value: {{ .Values.api.headerTimeoutSeconds | quote }}}
    - {name: SCHEDEXEC_API_BODY_TIMEOUT_SECONDS, value: {{ .Values.api.bodyTimeoutSeconds | quote }}}
    - {name: SCHEDEXEC_API_KEEP_ALIVE_TIMEOUT_SECONDS, value: {{ .Values.api.keepAliveTimeoutSeconds | int | quote }}}
    - {name: SCHEDEXEC_API_MAX_CONNECTIONS, value: {{ .Values.api.maxConnections | int | quote }}}
    - {name: SCHEDEXEC_API_METRICS_PORT, value: {{ .Values.monitoring.api.metricsPort | int | quote }}}
    {{- if .Values.api.plainHttp }}
    - {name: SCHEDEXEC_API_PLAIN_HTTP, value: "true"}
    {{- else }}
    - {name: SCHEDEXEC_API_TLS_CERT_FILE, value: /etc/schedexec/tls/tls.crt}
    - {name: SCHEDEXEC_API_TLS_KEY_FILE, value: /etc/schedexec/tls/tls.key}
    {{- end }}
  ports:
    - {name: api, containerPort: {{ .Values.api.port }}}
    {{- if .Values.monitoring.api.metricsPort }}
    - {name: api-metrics, containerPort: {{ .Values.monitoring.api.metricsPort }}}
    {{- end }}
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
  volumeMounts:
    {{- if eq .Values.api.mode "sidecar" }}
    {{- include "schedexec.tokenMount" "api-token" | nindent 4 }}
    {{- end }}
    {{- if not .Values.api.plainHttp }}
    - {name: api-tls, mountPath: /etc/schedexec/tls, readOnly: true}
    {{- end }}
    - {name: api-idempotency, mountPath: /etc/schedexec/idempotency, readOnly: true}
{{- end -}}

{{/* The API container's volumes (but its token's): its TLS certificate and its Idempotency-Key HMAC key. */}}
{{- define "schedexec.api.volumes" -}}
{{- if not .Values.api.plainHttp }}
- name: api-tls
  secret: {secretName: {{ include "schedexec.api.tlsSecretName" . }}}
{{- end }}
- name: api-idempotency
  secret: {secretName: {{ include "schedexec.api.idempotencySecretName" . }}}
{{- end -}}
