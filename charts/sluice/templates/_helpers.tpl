{{/* Names. <fullname> is the external Service, so KIngress status names it. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sluice.controller" -}}{{ include "sluice.fullname" . }}-controller{{- end -}}
{{- define "sluice.proxy" -}}{{ include "sluice.fullname" . }}-proxy{{- end -}}
{{- define "sluice.internal" -}}{{ include "sluice.fullname" . }}-internal{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end -}}

{{/* Selector labels of one component: pass (list $ "controller") or (list $ "proxy"). */}}
{{- define "sluice.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "sluice.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "sluice.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The binary's path in the image (the Dockerfile installs it there). */}}
{{- define "sluice.binary" -}}/usr/local/bin/sluice{{- end -}}

{{- define "sluice.publicLbDomain" -}}
{{ include "sluice.fullname" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end -}}
{{- define "sluice.privateLbDomain" -}}
{{ include "sluice.internal" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end -}}
{{- define "sluice.xdsHost" -}}
{{ include "sluice.controller" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end -}}

{{/* Where config-autoscaler is read from. */}}
{{- define "sluice.systemNamespace" -}}
{{ ternary .Values.knative.systemNamespace .Release.Namespace .Values.knative.enabled }}
{{- end -}}

{{- define "sluice.xdsTokenSecret" -}}
{{ .Values.xds.token.existingSecret | default (printf "%s-xds-token" (include "sluice.fullname" .)) }}
{{- end -}}

{{/* The kubelet waits this long after the preStop sleep began: sleep + drain + margin. */}}
{{- define "sluice.proxyTerminationGrace" -}}
{{ add .Values.proxy.drain.preStopSeconds .Values.proxy.drain.shutdownGraceSeconds .Values.proxy.drain.marginSeconds }}
{{- end -}}

{{/* Non-root, nothing to escalate to, no capabilities (every port is above 1024), and a
read-only root filesystem: sluice writes nothing to disk. */}}
{{- define "sluice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "sluice.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end -}}

{{/* xDS authentication: the arguments, the volume and its mount; pass (list $ "controller")
or (list $ "proxy"). */}}
{{- define "sluice.xdsArgs" -}}
{{- $root := index . 0 -}}
{{- if eq $root.Values.xds.auth "token" }}
- --xds-token-file=/var/run/sluice/xds/token
{{- else }}
- --xds-ca=/var/run/sluice/xds/ca.crt
- --xds-cert=/var/run/sluice/xds/tls.crt
- --xds-key=/var/run/sluice/xds/tls.key
{{- end }}
{{- end -}}
{{- define "sluice.xdsVolume" -}}
{{- $root := index . 0 -}}
- name: xds-auth
  secret:
    {{- if eq $root.Values.xds.auth "token" }}
    secretName: {{ include "sluice.xdsTokenSecret" $root }}
    items:
      - key: token
        path: token
    {{- else }}
    secretName: {{ include "sluice.fullname" $root }}-xds-{{ index . 1 }}-tls
    {{- end }}
    defaultMode: 0440
{{- end -}}
{{- define "sluice.xdsVolumeMount" -}}
- name: xds-auth
  mountPath: /var/run/sluice/xds
  readOnly: true
{{- end -}}

{{- define "sluice.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{/* Proxy worker threads: proxy.threads, else the CPU limit, else the CPU request, rounded
up (at least 1). Without this a pod on a 64-core node would start 64 workers for half a CPU;
Istio sizes Envoy's concurrency from the CPU limit the same way. */}}
{{- define "sluice.proxyThreads" -}}
{{- if .Values.proxy.threads -}}
{{ int64 .Values.proxy.threads }}
{{- else -}}
{{- $resources := .Values.proxy.resources | default dict -}}
{{- $cpu := (($resources.limits | default dict).cpu) | default (($resources.requests | default dict).cpu) | default 1 | toString -}}
{{- $millis := 0 -}}
{{- if hasSuffix "m" $cpu -}}
{{- $millis = trimSuffix "m" $cpu | int64 -}}
{{- else -}}
{{- $millis = mulf ($cpu | float64) 1000 | int64 -}}
{{- end -}}
{{ max 1 (div (add $millis 999) 1000) }}
{{- end -}}
{{- end -}}
