{{/* The namespaced rules of the operator; see operator-rbac.yaml. */}}
{{- define "novacron.operatorRules" -}}
{{- $write := list "get" "list" "watch" "create" "update" "patch" "delete" -}}
- apiGroups: ["novacron.io"]
  resources: ["novacronclusters", "novacronregions", "dwcpfederations"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["novacron.io"]
  resources: ["novacronclusters/status", "novacronregions/status", "dwcpfederations/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["novacron.io"]
  resources: ["novacronregions/scale"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["statefulsets", "daemonsets", "deployments"]
  verbs: {{ toJson $write }}
- apiGroups: [""]
  resources: ["services", "configmaps", "secrets", "serviceaccounts"]
  verbs: {{ toJson $write }}
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: {{ toJson $write }}
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: {{ toJson $write }}
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: {{ toJson $write }}
{{- if .Values.operator.rbac.serviceMonitors }}
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: {{ toJson $write }}
{{- end }}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
