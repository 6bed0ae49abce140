{{/*
Names. Object names are <fullname>-controller and <fullname>-agent. Pods carry
app.kubernetes.io/name=migprobe-controller or migprobe-agent: the controller finds the agent on a node by
that label (plus spec.nodeName), and the NetworkPolicy admits peers by it.
*/}}

{{- define "migprobe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "migprobe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "migprobe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "migprobe.baseLabels" -}}
helm.sh/chart: {{ include "migprobe.chart" . }}
app.kubernetes.io/part-of: migprobe
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "migprobe.labels" -}}
{{ include "migprobe.baseLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Per component: call with (dict "root" $ "component" "controller"|"agent"). */}}
{{- define "migprobe.componentName" -}}
{{- printf "%s-%s" (include "migprobe.fullname" .root) .component -}}
{{- end -}}

{{- define "migprobe.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "migprobe-%s" .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "migprobe.componentLabels" -}}
{{ include "migprobe.baseLabels" .root }}
{{ include "migprobe.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "migprobe.serviceAccountName" -}}
{{- $sa := index .root.Values .component "serviceAccount" -}}
{{- if $sa.create -}}
{{- default (include "migprobe.componentName" .) $sa.name -}}
{{- else -}}
{{- required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false" .component .component) $sa.name -}}
{{- end -}}
{{- end -}}

{{- define "migprobe.image" -}}
{{- $img := index .root.Values .component "image" -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{- define "migprobe.leaseName" -}}
{{- default (include "migprobe.componentName" (dict "root" . "component" "controller")) .Values.controller.leaderElection.leaseName -}}
{{- end -}}

{{- define "migprobe.tlsEnabled" -}}
{{- if ne .Values.tls.mode "none" -}}true{{- end -}}
{{- end -}}

{{- define "migprobe.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "migprobe.componentName" (dict "root" . "component" "agent"))) .Values.tls.secretName -}}
{{- end -}}

{{/* The agent's liveness/readiness probe: values give path and timings, TLS decides port name and scheme. */}}
{{- define "migprobe.agentProbe" -}}
{{- $probe := deepCopy .probe -}}
{{- $_ := set $probe.httpGet "port" "api" -}}
{{- $_ := set $probe.httpGet "scheme" (ternary "HTTPS" "HTTP" (eq (include "migprobe.tlsEnabled" .root) "true")) -}}
{{- toYaml $probe -}}
{{- end -}}
