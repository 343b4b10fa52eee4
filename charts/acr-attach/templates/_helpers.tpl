{{/*
Names and labels shared by every object of the chart. Object names derive from the release name
(fullname), so two releases never collide on cluster-scoped objects (ClusterRole, binding).
*/}}

{{- define "acr-attach.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<name>, or just <release> when it already contains the name; at most 63 chars. */}}
{{- define "acr-attach.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "acr-attach.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Immutable once a Deployment exists: only name and instance, never the version. */}}
{{- define "acr-attach.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acr-attach.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "acr-attach.labels" -}}
helm.sh/chart: {{ include "acr-attach.chart" . }}
{{ include "acr-attach.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: acr-attach
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "acr-attach.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "acr-attach.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "acr-attach.leaseName" -}}
{{- default (include "acr-attach.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* repository@digest when a digest is given (it pins the bytes), else repository:tag. */}}
{{- define "acr-attach.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The chart's CRD: files/crd.yaml is `acr-attach crd` byte for byte (tests/generated.rs);
the release's labels and the keep policy are added here, not in the generated file. */}}
{{- define "acr-attach.crd" -}}
{{- $crd := .Files.Get "files/crd.yaml" | fromYaml -}}
{{- $metadata := $crd.metadata -}}
{{- $_ := set $metadata "labels" (merge (include "acr-attach.labels" . | fromYaml) (default dict $metadata.labels)) -}}
{{- if .Values.crds.keep -}}
{{- $_ := set $metadata "annotations" (merge (dict "helm.sh/resource-policy" "keep") (default dict $metadata.annotations)) -}}
{{- end -}}
{{- toYaml $crd -}}
{{- end -}}
