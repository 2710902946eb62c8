{{/*
  The operator's namespaced rules: exactly the calls novacron_operator makes (kube.py,
  reconcile.py, handlers/): kopf lists and watches the three kinds and, by label, the
  children it owns; reconciles server-side apply children (patch, and create: an apply that
  creates an object is authorised as create too), prune them (list + delete), read the
  workloads and the CA Secret back (get), patch status and finalizers, post Events, and
  follow the node pods (list + watch: the day-2 sequencer reads their readiness and
  revision; rollouts move the StatefulSet's partition, so no pod is ever deleted by the
  operator), and expand the node pods' PersistentVolumeClaims on a volume resize.
  tests/deploy/test_e2e_operator_rbac.py
  runs the operator under exactly these rules and fails on any 403.
*/}}
{{- define "novacron.operatorRules" -}}
- apiGroups: ["novacron.io"]
  resources: ["novacronclusters", "novacronregions", "dwcpfederations"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["novacron.io"]
  resources: ["novacronclusters/status", "novacronregions/status", "dwcpfederations/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "services", "serviceaccounts"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets", "daemonsets", "deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch", "delete"]
{{- if .Values.operator.rbac.serviceMonitors }}
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["list", "create", "patch", "delete"]
{{- end }}
{{- if .Values.operator.rbac.certificates }}
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["list", "create", "patch", "delete"]
{{- end }}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- /* volume resize: the claims are expanded in place (volumes.py) */}}
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* In the agent namespace: the DWCP agents' DaemonSet, ConfigMap and ServiceAccount. */}}
{{- define "novacron.agentRules" -}}
- apiGroups: ["apps"]
  resources: ["daemonsets"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["list", "create", "patch", "delete"]
{{- end -}}
