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

{{/*
Cluster-wide mode: only when asked for (operator.clusterWide). The default is namespaced:
the operator's rights stop at the namespaces it watches.
*/}}
{{- define "docpipe.clusterWide" -}}
{{- if .Values.operator.clusterWide }}
{{- if .Values.operator.watchNamespaces }}
{{- fail "operator.clusterWide watches every namespace: leave operator.watchNamespaces empty" }}
{{- end }}true
{{- end }}
{{- end }}

{{/*
The namespaces the operator watches, as a JSON list (read it with fromJsonArray):
operator.watchNamespaces, else the release namespace; [] in cluster-wide mode.
*/}}
{{- define "docpipe.watchedNamespaces" -}}
{{- if include "docpipe.clusterWide" . }}[]
{{- else }}{{ .Values.operator.watchNamespaces | default (list .Release.Namespace) | toJson }}
{{- end }}
{{- end }}

{{/*
DOCPIPE_OPERATOR_ALLOWED_IMAGES: operator.allowedImages, else this chart's three
repositories (any tag or digest). Pipelines naming another image are refused.
*/}}
{{- define "docpipe.allowedImages" -}}
{{- $patterns := .Values.operator.allowedImages }}
{{- if not $patterns }}
{{- range $kind := list "io" "cpu" "gpu" }}
{{- $repository := (index $.Values.images $kind).repository }}
{{- $patterns = append $patterns (printf "%s:*" $repository) }}
{{- $patterns = append $patterns (printf "%s@*" $repository) }}
{{- end }}
{{- end }}
{{- join "," (uniq $patterns) }}
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
{{- $watched := include "docpipe.watchedNamespaces" . | fromJsonArray }}
{{- $ns := .Values.pipeline.namespace | default (first $watched) | default .Release.Namespace }}
{{- if and $watched (not (has $ns $watched)) }}
{{- fail (printf "pipeline.namespace %s is not in operator.watchNamespaces %v (default: the release namespace): the operator would never see the pipeline" $ns $watched) }}
{{- end }}
{{- $ns }}
{{- end }}

{{/* The operator's policy rules, shared by its namespaced Roles and cluster-wide ClusterRole. */}}
{{- define "docpipe.operatorRules" -}}
# Its own resource: watch it, record progress (kopf annotations, finalizer) and status.
- apiGroups: [docpipe.io]
  resources: [documentpipelines]
  verbs: [get, list, watch, patch]
- apiGroups: [docpipe.io]
  resources: [documentpipelines/status]
  verbs: [get, patch]
# What it owns: created once, patched on spec change and to scale; read by name.
# A versioned pool's drained versions are deleted (rollout.py).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, create, patch]
# Per-pool PodDisruptionBudgets: deleted when a pool's budget is turned off.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch, delete]
# The Secrets a pipeline names: read by name (never listed or watched) to check their
# docpipe.io/allow-reference label, and for the operator's own Temporal connection.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events on DocumentPipelines (scale decisions, Temporal outages, refusals).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# A shrinking pool's pods: listed by label, annotated with their deletion cost
# (controller.kubernetes.io/pod-deletion-cost) so the idle ones go first.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
{{- end }}

{{/*
Egress rules (YAML list) from networkPolicy destinations ({to, ports}); the io workers'
internet rule when (list $ true) is passed as the second item. A destination without
peers gives no rule: a rule without `to` would allow every address.
*/}}
{{- define "docpipe.egressRules" -}}
{{- $root := index . 0 }}
{{- $np := $root.Values.networkPolicy }}
{{- $rules := list }}
{{- range index . 2 }}
{{- if .to }}
{{- $rule := dict "to" .to }}
{{- with .ports }}{{ $_ := set $rule "ports" . }}{{ end }}
{{- $rules = append $rules $rule }}
{{- end }}
{{- end }}
{{- if and (index . 1) $np.internet.enabled }}
{{- /* Every address of cidrs but the except list and the API server, each exception
     under the CIDR of its own address family. */}}
{{- $blocked := concat $np.internet.except $np.apiServer.cidrs }}
{{- $peers := list }}
{{- range $cidr := $np.internet.cidrs }}
{{- $v6 := contains ":" $cidr }}
{{- $except := list }}
{{- range $blocked }}
{{- if and (eq $v6 (contains ":" .)) (ne . $cidr) }}
{{- $except = append $except . }}
{{- end }}
{{- end }}
{{- $block := dict "cidr" $cidr }}
{{- with uniq $except }}{{ $_ := set $block "except" . }}{{ end }}
{{- $peers = append $peers (dict "ipBlock" $block) }}
{{- end }}
{{- $rule := dict "to" $peers }}
{{- with $np.internet.ports }}{{ $_ := set $rule "ports" . }}{{ end }}
{{- $rules = append $rules $rule }}
{{- end }}
{{- toYaml $rules }}
{{- end }}
