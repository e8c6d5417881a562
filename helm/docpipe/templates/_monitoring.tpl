{{/*
Worker scrape endpoints (ServiceMonitor endpoints or PodMonitor podMetricsEndpoints):
/metrics on ports metrics (docpipe_*, 9100) and sdk-metrics (temporal_*, 9101), with
job="<pipeline>-<pool>-metrics" (the operator's per-pool Service name, what the dashboards
and the DocpipeWorkerDown alert match) and pipeline/pool labels from the pod's labels.
(list $ $monitorValues)
*/}}
{{- define "docpipe.workerEndpoints" -}}
{{- $m := index . 1 }}
{{- range list "metrics" "sdk-metrics" }}
- port: {{ . }}
  path: /metrics
  interval: {{ $m.interval }}
  scrapeTimeout: {{ $m.scrapeTimeout }}
  relabelings:
    - sourceLabels: [__meta_kubernetes_pod_label_docpipe_io_pipeline, __meta_kubernetes_pod_label_docpipe_io_pool]
      separator: "-"
      regex: "(.+-.+)"
      targetLabel: job
      replacement: "${1}-metrics"
    - sourceLabels: [__meta_kubernetes_pod_label_docpipe_io_pipeline]
      targetLabel: pipeline
    - sourceLabels: [__meta_kubernetes_pod_label_docpipe_io_pool]
      targetLabel: pool
{{- end }}
{{- end }}

{{/* Where the workers run: monitoring.namespaces, else the watched ones, else any. */}}
{{- define "docpipe.workerNamespaceSelector" -}}
{{- $namespaces := .Values.monitoring.namespaces | default (include "docpipe.watchedNamespaces" . | fromJsonArray) }}
{{- if $namespaces }}
matchNames:
  {{- toYaml $namespaces | nindent 2 }}
{{- else }}
any: true
{{- end }}
{{- end }}

{{/* The labels of the worker pods and Services the operator creates (resources.py). */}}
{{- define "docpipe.workerSelector" -}}
matchLabels:
  app.kubernetes.io/part-of: docpipe
  app.kubernetes.io/managed-by: docpipe-operator
{{- end }}
