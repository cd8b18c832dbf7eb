{{/* Chart name, truncated to the 63 characters Kubernetes allows in a name. */}}
{{- define "strata.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified operator name: release name plus "-operator". */}}
{{- define "strata.operatorName" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "strata.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "strata.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "strata.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: strata
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "strata.operatorSelector" -}}
app.kubernetes.io/name: {{ include "strata.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "strata.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{/*
The sample cluster's TLS Secret when the Grafana datasource and helm test talk to it and it
serves TLS (spec.tls): its nodes then serve HTTP over TLS only. Empty otherwise; the chart
knows nothing of the TLS of a Service named by tests.service.
*/}}
{{- define "strata.clusterTlsSecret" -}}
{{- if and .Values.sampleCluster.enabled (or (not .Values.tests.service) (eq .Values.tests.service .Values.sampleCluster.name)) -}}
{{- $tls := (.Values.sampleCluster.spec | default dict).tls -}}
{{- if $tls -}}{{- $tls.secretName -}}{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Service the Grafana datasource and helm test use. */}}
{{- define "strata.clusterUrl" -}}
{{- $svc := default .Values.sampleCluster.name .Values.tests.service -}}
{{- $scheme := ternary "https" "http" (ne (include "strata.clusterTlsSecret" .) "") -}}
{{- printf "%s://%s.%s.svc:8181" $scheme $svc .Release.Namespace -}}
{{- end -}}
