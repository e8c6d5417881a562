{{/*
Names. The resource prefix is the release name, plus "-docpipe" unless the release name
already contains it: release "docpipe" gives "docpipe-operator", as in deploy/.
*/}}
{{- define "docpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "docpipe.fullname" -}}
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

{{/* The operator's objects: Deployment, ServiceAccount, roles. */}}
{{- define "docpipe.operatorName" -}}
{{- printf "%s-operator" (include "docpipe.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "docpipe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries (less app.kubernetes.io/instance). */}}
{{- define "docpipe.commonLabels" -}}
helm.sh/chart: {{ include "docpipe.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: docpipe
{{- end }}

{{- define "docpipe.labels" -}}
{{ include "docpipe.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator pods' selector: stable across upgrades, never add to it. */}}
{{- define "docpipe.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "docpipe.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "docpipe.operatorLabels" -}}
{{ include "docpipe.commonLabels" . }}
{{ include "docpipe.operatorSelectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "docpipe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "docpipe.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference: (list $ "io"|"cpu"|"gpu"). A digest wins over the tag; the tag
defaults to the chart's appVersion.
*/}}
{{- define "docpipe.image" -}}
{{- $root := index . 0 }}
{{- $image := index $root.Values.images (index . 1) }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* Cluster-wide mode: no namespaces listed. */}}
{{- define "docpipe.clusterWide" -}}
{{- if not .Values.operator.watchNamespaces }}true{{ end }}
{{- end }}

{{/* The operator's metrics Service. */}}
{{- define "docpipe.metricsServiceName" -}}
{{- printf "%s-metrics" (include "docpipe.operatorName" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The DocumentPipeline's namespace: pipeline.namespace, else the first watched namespace,
else the release namespace. The operator must watch it.
*/}}
{{- define "docpipe.pipelineNamespace" -}}
{{- $watched := .Values.operator.watchNamespaces }}
{{- $ns := .Values.pipeline.namespace | default (first $watched) | default .Release.Namespace }}
{{- if and $watched (not (has $ns $watched)) }}
{{- fail (printf "pipeline.namespace %s is not in operator.watchNamespaces %v: the operator would never see the pipeline" $ns $watched) }}
{{- end }}
{{- $ns }}
{{- end }}
