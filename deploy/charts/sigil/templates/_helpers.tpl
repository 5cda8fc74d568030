{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "sigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: RELEASE-sigil, or RELEASE when it already says sigil. */}}
{{- define "sigil.fullname" -}}
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

{{- define "sigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the controller pods; never change them between releases. */}}
{{- define "sigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Sharding (`sharding.shards` > 1) renders one Deployment (and PodDisruptionBudget) per shard.
dict: root, shard. Unsharded, the name and selector are exactly those of an unsharded release.
*/}}
{{- define "sigil.sharded" -}}
{{- if gt (int .Values.sharding.shards) 1 }}true{{ end }}
{{- end }}

{{- define "sigil.shardName" -}}
{{- if include "sigil.sharded" .root }}
{{- printf "%s-shard-%d" (include "sigil.fullname" .root) .shard }}
{{- else }}
{{- include "sigil.fullname" .root }}
{{- end }}
{{- end }}

{{- define "sigil.shardSelectorLabels" -}}
{{ include "sigil.selectorLabels" .root }}
{{- if include "sigil.sharded" .root }}
sigil.dev/shard: {{ .shard | quote }}
{{- end }}
{{- end }}

{{- define "sigil.labels" -}}
helm.sh/chart: {{ include "sigil.chart" . }}
{{ include "sigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sigil
{{- end }}

{{- define "sigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sigil.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sigil.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The subject every binding grants to. */}}
{{- define "sigil.subject" -}}
- kind: ServiceAccount
  name: {{ include "sigil.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The resources of sigil's API group. Namespaced mode leaves out the cluster-scoped ClusterSecretStore,
which a Role cannot grant.
*/}}
{{- define "sigil.apiResources" -}}
{{- $resources := list "sealedsecrets" "externalsecrets" "secretstores" "gitsources" "syncs" }}
{{- if not .Values.rbac.namespaced }}
{{- $resources = append $resources "clustersecretstores" }}
{{- end }}
{{- toJson $resources }}
{{- end }}

{{/*
A (Cluster)RoleBinding of the controller's ServiceAccount.
dict: root, kind, name, roleKind, roleName (default: name), namespace ("" for a ClusterRoleBinding).
*/}}
{{- define "sigil.binding" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ .kind }}
metadata:
  name: {{ .name }}
  {{- with .namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "sigil.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ .roleKind }}
  name: {{ default .name .roleName }}
subjects:
  {{- include "sigil.subject" .root | nindent 2 }}
{{- end }}
