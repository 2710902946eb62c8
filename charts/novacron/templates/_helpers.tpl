{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "novacron.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "novacron.fullname" -}}
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

{{- define "novacron.operatorName" -}}
{{- printf "%s-operator" (include "novacron.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "novacron.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "novacron.labels" -}}
helm.sh/chart: {{ include "novacron.chart" . }}
app.kubernetes.io/name: {{ include "novacron.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: novacron
novacron.io/environment: {{ .Values.environment | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "novacron.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "novacron.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "novacron.operatorLabels" -}}
{{ include "novacron.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "novacron.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "novacron.operatorName" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: registry/repository:tag (tag defaults to the chart's appVersion), or @digest. */}}
{{- define "novacron.image" -}}
{{- $img := .image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the operator watches: the listed ones, or the release namespace alone. */}}
{{- define "novacron.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces -}}
{{- join "," .Values.operator.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Pod and container security contexts of the Pod Security "restricted" profile. */}}
{{- define "novacron.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "novacron.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Argo CD sync wave annotation (CRDs are wave -1 in manifests/crds, operator 0, resources 1). */}}
{{- define "novacron.wave" -}}
{{- if $.root.Values.argocd.syncWaves -}}
argocd.argoproj.io/sync-wave: {{ .wave | quote }}
{{- end -}}
{{- end -}}
