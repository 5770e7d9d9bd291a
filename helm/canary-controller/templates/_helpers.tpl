{{/* Names, labels and the RBAC rules shared by every template. */}}

{{- define "canary-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "canary-controller.fullname" -}}
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

{{- define "canary-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canary-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "canary-controller.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "canary-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: canary-controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "canary-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "canary-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "canary-controller.subject" -}}
- kind: ServiceAccount
  name: {{ include "canary-controller.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "canary-controller.leaseName" -}}
{{- default (include "canary-controller.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "canary-controller.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The verbs the controller uses in every namespace it watches: nothing more.
docs/install.md explains each rule; tests/e2e/test_helm_install.py proves the
set is enough for a whole canary and that other verbs are refused.
*/}}
{{- define "canary-controller.rules" -}}
# kopf lists and watches CanaryReleases (a reconcile reads them from memory,
# and again after a conflict); the release-tag webhook and `canaryctl`
# actions patch spec and annotations.
- apiGroups: ["canary.dev"]
  resources: ["canaryreleases"]
  verbs: ["get", "list", "watch", "patch"]
# Status is replaced whole, guarded by resourceVersion.
- apiGroups: ["canary.dev"]
  resources: ["canaryreleases/status"]
  verbs: ["update"]
# What the controller creates (the canary Deployment, hook Jobs, the canary
# Service and Ingress) is owned by its release with blockOwnerDeletion; with
# the OwnerReferencesPermissionEnforcement admission plugin (OpenShift) that
# needs update on the owner's finalizers. The one finalizer written
# (canary.dev/route, on releases with trafficRouting) is a patch of the release.
- apiGroups: ["canary.dev"]
  resources: ["canaryreleases/finalizers"]
  verbs: ["update"]
# Deployments are watched (an in-memory index: a reconcile reads no
# Deployment from the apiserver); the target is read before it is patched
# (replicas, image, strategy); the canary is created, patched and deleted.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Canary pods (label canary.dev/track=canary only, filtered by the apiserver)
# are watched to catch crash loops and restarts.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# HorizontalPodAutoscalers are watched, read only: a target an HPA sizes is
# never resized by the controller.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch"]
# Every start, step, rollback and promotion is recorded as an Event.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.rbac.secretRefs }}
# Notification webhooks and database connections named by Secret references.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- if .Values.rbac.gates }}
# Gates: migration SQL and env references in ConfigMaps.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# Gates: Job hooks run before the canary, after promotion and on rollback;
# backup evidence from Jobs, CronJobs and VolumeSnapshots.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "create", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get"]
# Gates: migration SQL inside the release's image is printed by a Job and read
# from its pod's log.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: ["snapshot.storage.k8s.io"]
  resources: ["volumesnapshots"]
  verbs: ["get", "list"]
{{- end }}
{{- if .Values.rbac.routers }}
# Traffic routers (spec.trafficRouting): the canary Service and the canary
# Ingress are created and steered by server-side apply (create: the first
# apply of an object that does not exist yet); the user's HTTPRoute or
# VirtualService is read and its weights applied; a DestinationRule is read.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "patch"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "patch"]
- apiGroups: ["networking.istio.io"]
  resources: ["destinationrules"]
  verbs: ["get"]
{{- end }}
{{- end }}
