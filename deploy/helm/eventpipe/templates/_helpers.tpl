{{/* Names: <release>-eventpipe unless the release name already says eventpipe. */}}
{{- define "eventpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "eventpipe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "eventpipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventpipe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "eventpipe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "eventpipe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eventpipe
{{- end -}}

{{- define "eventpipe.secretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-secrets" (include "eventpipe.fullname" .)) -}}
{{- end -}}

{{- define "eventpipe.scheme" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end -}}
{{- end -}}

{{/* The processor is a StatefulSet with a volume claim for the disk queue. */}}
{{- define "eventpipe.processorKind" -}}
{{- if eq .Values.queue.type "disk" }}StatefulSet{{ else }}Deployment{{ end -}}
{{- end -}}

{{- define "eventpipe.hasApiKeys" -}}
{{- if or .Values.auth.apiKeys (and .Values.auth.existingSecret .Values.auth.apiKeysInExistingSecret) }}true{{ end -}}
{{- end -}}

{{/*
A role's pod template. Called with (dict "root" $ "role" "gateway" "v" .Values.gateway).
*/}}
{{- define "eventpipe.podTemplate" -}}
{{- $root := .root -}}
{{- $v := .v -}}
metadata:
  labels:
    {{- include "eventpipe.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if $root.Values.metrics.scrapeAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.port | quote }}
    prometheus.io/path: /metrics
    prometheus.io/scheme: {{ include "eventpipe.scheme" $root }}
    {{- end }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: eventpipe
      image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: ["eventpipe", {{ .role | quote }}]
      ports:
        - name: http
          containerPort: {{ $v.port }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "eventpipe.fullname" $root }}-config
      env:
        - name: INTERNAL_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ include "eventpipe.secretName" $root }}
              key: INTERNAL_TOKEN
      livenessProbe:
        httpGet:
          path: /health
          port: http
          scheme: {{ include "eventpipe.scheme" $root | upper }}
        initialDelaySeconds: 5
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /ready
          port: http
          scheme: {{ include "eventpipe.scheme" $root | upper }}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 2
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if include "eventpipe.hasApiKeys" $root }}
        - name: api-keys
          mountPath: /etc/eventpipe/keys
          readOnly: true
        {{- end }}
        {{- if $root.Values.tls.enabled }}
        - name: tls
          mountPath: /etc/eventpipe/tls
          readOnly: true
        {{- end }}
        {{- if and (eq .role "processor") (eq $root.Values.queue.type "disk") }}
        - name: queue
          mountPath: /var/lib/eventpipe
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if include "eventpipe.hasApiKeys" $root }}
    - name: api-keys
      secret:
        secretName: {{ include "eventpipe.secretName" $root }}
        defaultMode: 288
        items:
          - key: api-keys
            path: api-keys
    {{- end }}
    {{- if $root.Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ $root.Values.tls.secretName }}
        defaultMode: 288
    {{- end }}
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
