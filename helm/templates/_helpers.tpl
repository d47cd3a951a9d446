{{/* The chart's name, shortened to fit a label value. */}}
{{- define "canary-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: object names, the Lease's default name. */}}
{{- define "canary-controller.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "canary-controller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "canary-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canary-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "canary-controller.labels" -}}
helm.sh/chart: {{ include "canary-controller.chart" . }}
{{ include "canary-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "canary-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "canary-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "canary-controller.leaseName" -}}
{{- default (include "canary-controller.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "canary-controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where file-mode policies and the mesh kubeconfig are mounted. */}}
{{- define "canary-controller.policyDir" -}}/etc/canary-controller/policies{{- end }}
{{- define "canary-controller.meshDir" -}}/etc/canary-controller/mesh{{- end }}

{{/* The ConfigMap key of an inline policy: <name>.yaml, or <namespace>.<name>.yaml when it names one. */}}
{{- define "canary-controller.policyKey" -}}
{{- $meta := .metadata | default dict }}
{{- if $meta.namespace }}
{{- printf "%s.%s.yaml" $meta.namespace $meta.name }}
{{- else }}
{{- printf "%s.yaml" $meta.name }}
{{- end }}
{{- end }}

{{/*
Refuse combinations that cannot work, with a message saying what to change. Included by the Deployment,
so every render checks them.
*/}}
{{- define "canary-controller.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if and (gt (int .Values.replicaCount) 1) (not $le.enabled) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: several replicas would all write rollouts. Set leaderElection.enabled=true, or replicaCount=1." (int .Values.replicaCount)) }}
{{- end }}
{{- if $le.enabled }}
{{- if not (and (lt (float64 $le.retryPeriodSeconds) (float64 $le.renewDeadlineSeconds)) (lt (float64 $le.renewDeadlineSeconds) (float64 $le.leaseDurationSeconds))) }}
{{- fail (printf "leaderElection: retryPeriodSeconds (%v) < renewDeadlineSeconds (%v) < leaseDurationSeconds (%v) must hold." $le.retryPeriodSeconds $le.renewDeadlineSeconds $le.leaseDurationSeconds) }}
{{- end }}
{{- end }}
{{- if and (not .Values.watchCrds) (not .Values.policies) }}
{{- fail "watchCrds is false and no policies are given: the controller would have nothing to serve. Set watchCrds=true or give policies." }}
{{- end }}
{{- $keys := dict }}
{{- range $i, $policy := .Values.policies }}
{{- $key := include "canary-controller.policyKey" $policy }}
{{- if hasKey $keys $key }}
{{- fail (printf "policies[%d]: a policy %s is given twice (ConfigMap key %s); names must be unique per namespace." $i ($policy.metadata.name) $key) }}
{{- end }}
{{- $_ := set $keys $key true }}
{{- end }}
{{- $declared := list }}
{{- range concat .Values.secretEnv .Values.extraEnv }}
{{- $declared = append $declared .name }}
{{- end }}
{{- if and .Values.prometheus.bearerTokenEnv (not (has .Values.prometheus.bearerTokenEnv $declared)) }}
{{- fail (printf "prometheus.bearerTokenEnv is %s but no such variable is declared: add {name: %s, secretName: ..., key: ...} to secretEnv." .Values.prometheus.bearerTokenEnv .Values.prometheus.bearerTokenEnv) }}
{{- end }}
{{- $managed := list "CANARY_NAMESPACE" "CANARY_WATCH_CRDS" "CANARY_WATCH_NAMESPACES" "CANARY_POLICY_SELECTOR" "CANARY_POLICY_DIR" "CANARY_TICK_SECONDS" "CANARY_WORKERS" "CANARY_LOG_LEVEL" "CANARY_HTTP_PORT" "CANARY_PROMETHEUS_URL" "CANARY_PROMETHEUS_BEARER_TOKEN_ENV" "CANARY_ALERTS" "CANARY_LEADER_ELECT" "CANARY_LEASE_NAME" "CANARY_LEASE_DURATION_SECONDS" "CANARY_RENEW_DEADLINE_SECONDS" "CANARY_RETRY_PERIOD_SECONDS" "CANARY_IDENTITY" "CANARY_MESH_KUBECONFIG" "CANARY_MESH_CONTEXT" }}
{{- range $declared }}
{{- if has . $managed }}
{{- fail (printf "%s is set by the chart from its own values; do not declare it in secretEnv or extraEnv." .) }}
{{- end }}
{{- end }}
{{- if ne (len $declared) (len (uniq $declared)) }}
{{- fail (printf "secretEnv and extraEnv declare a variable more than once: %s" (join ", " $declared)) }}
{{- end }}
{{- end }}

{{/*
The rules the controller needs wherever its policies and their targets live (the whole cluster, or each
of watchNamespaces). Derived from the API calls in controller/adapters: nothing is listed that the code
does not call.
*/}}
{{- define "canary-controller.policyRules" -}}
{{- if .Values.watchCrds }}
# CrdPolicySource lists and watches them; CrdStatusStore reads them before each status write.
- apiGroups: ["canaryctl.dev"]
  resources: ["canarypolicies"]
  verbs: ["get", "list", "watch"]
# CrdStatusStore.save replaces the status subresource.
- apiGroups: ["canaryctl.dev"]
  resources: ["canarypolicies/status"]
  verbs: ["update"]
{{- end }}
{{- if not .Values.meshKubeconfig.secretName }}
# KubernetesTrafficRouter: read the route (list and watch: the watch cache), JSON-patch one destination list
# (with a `test` first).
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: [{{ include "canary-controller.readVerbs" . }}, "patch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["tcproutes"]
  verbs: [{{ include "canary-controller.readVerbs" . }}, "patch"]
{{- end }}
# KubernetesWorkloadReader: is the canary Deployment Available, and what is its pod template? (list and
# watch: the watch cache)
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: [{{ include "canary-controller.readVerbs" . }}]
# KubernetesEventRecorder creates core/v1 Events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if and .Values.rbac.readSecrets (not .Values.rbac.secretNamespaces) }}
{{- include "canary-controller.secretRule" . }}
{{- end }}
{{- end }}

{{/* get on Secrets, for SecretReader (off unless rbac.readSecrets; see docs/security.md). */}}
{{- define "canary-controller.secretRule" }}
# SecretReader: {secretKeyRef} credentials of spec.analysis.prometheus and spec.alerts.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- with .Values.rbac.secretNames }}
  resourceNames: {{ toJson . }}
{{- end }}
{{- end }}

{{/* The rules in the release namespace: file-mode status ConfigMaps and the leader-election Lease. */}}
{{- define "canary-controller.ownRules" -}}
{{- if .Values.policies }}
# ConfigMapStatusStore: one ConfigMap per file policy, read (list and watch: the watch cache), created, then
# replaced.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: [{{ include "canary-controller.readVerbs" . }}, "create", "update"]
{{- end }}
{{- if .Values.leaderElection.enabled }}
# LeaseLock: create the Lease once (create cannot be limited by name), then read and renew it.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "canary-controller.leaseName" . | quote }}]
  verbs: ["get", "update"]
{{- end }}
{{- end }}

{{/* How the controller reads routes, Deployments and status ConfigMaps: get, plus list and watch for its
watch caches (watchCache). */}}
{{- define "canary-controller.readVerbs" -}}
{{- if .Values.watchCache }}"get", "list", "watch"{{ else }}"get"{{ end }}
{{- end }}
