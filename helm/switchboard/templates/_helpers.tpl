{{/* Names, labels and the shared pieces of the API and ingest pod specs. */}}

{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; components append -redis, -llm, -ingest, -actions (so it is kept to 50). */}}
{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: api, redis, llm, ingest, actions. */}}
{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "switchboard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret the API reads: the user's existingSecret or the chart's own. */}}
{{- define "switchboard.secretName" -}}
{{- default (printf "%s-secrets" (include "switchboard.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* Whether the chart makes a Secret: only from values, never beside an existingSecret. */}}
{{- define "switchboard.chartSecret" -}}
{{- $s := .Values.secrets }}
{{- if and (not $s.existingSecret) (or $s.adminApiKey $s.slackSigningSecret $s.slackBotToken $s.webhooks $s.llmApiKey $s.webSecret .Values.redis.url) }}true{{- end }}
{{- end }}

{{- define "switchboard.configMap" -}}
{{- if or .Values.policy .Values.actions }}true{{- end }}
{{- end }}

{{/* Documents to ingest come from a ConfigMap (inline files or the user's own). */}}
{{- define "switchboard.documentsConfigMap" -}}
{{- if .Values.knowledge.documents.configMap }}
{{- .Values.knowledge.documents.configMap }}
{{- else if .Values.knowledge.documents.files }}
{{- printf "%s-documents" (include "switchboard.fullname" .) }}
{{- end }}
{{- end }}

{{/* The folder `switchboard kb ingest` reads. */}}
{{- define "switchboard.ingestSource" -}}
{{- if include "switchboard.documentsConfigMap" . }}/documents{{ else }}/kb/documents{{ end }}
{{- end }}

{{- define "switchboard.llmServerName" -}}
{{- printf "%s-llm" (include "switchboard.fullname" .) }}
{{- end }}

{{- define "switchboard.redisName" -}}
{{- printf "%s-redis" (include "switchboard.fullname" .) }}
{{- end }}

{{- define "switchboard.actionServerName" -}}
{{- printf "%s-actions" (include "switchboard.fullname" .) }}
{{- end }}

{{/* The URL the actions file's server.url names for the in-chart action server. */}}
{{- define "switchboard.actionServerUrl" -}}
{{- printf "http://%s:%d" (include "switchboard.actionServerName" .) (int .Values.actionServer.port) }}
{{- end }}

{{/* Refuse combinations that would deploy something broken, with the reason. */}}
{{- define "switchboard.validate" -}}
{{- if and .Values.redis.enabled .Values.redis.url }}
{{- fail "switchboard: set redis.url (an external Redis) or redis.enabled=true (the trial Redis in this chart), not both" }}
{{- end }}
{{- $shared := or .Values.redis.url .Values.redis.enabled .Values.secrets.existingSecret }}
{{- if and (not $shared) (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail "switchboard: more than one API replica needs a shared Redis (without one each pod keeps its own conversations): set redis.url, redis.enabled=true, or secrets.existingSecret with a redis-url key" }}
{{- end }}
{{- if and .Values.llm.server.enabled .Values.llm.local.gpu }}
{{- fail "switchboard: llm.server.enabled (a vLLM server) and llm.local.gpu (the model in the API pods) exclude each other" }}
{{- end }}
{{- if and .Values.llm.server.enabled (not .Values.llm.server.model.existingClaim) }}
{{- fail "switchboard: llm.server.enabled needs llm.server.model.existingClaim: a PVC holding the model folder llm.server.model.dir" }}
{{- end }}
{{- if and (has .Values.knowledge.ingest.mode (list "job" "cronjob")) (not .Values.knowledge.persistence.enabled) }}
{{- fail "switchboard: knowledge.ingest.mode job/cronjob writes the index to a volume the API pods read: set knowledge.persistence.enabled=true (or use mode initContainer)" }}
{{- end }}
{{- if and (ne .Values.knowledge.ingest.mode "none") (not .Values.knowledge.persistence.enabled) (not (include "switchboard.documentsConfigMap" .)) }}
{{- fail "switchboard: knowledge.ingest needs documents: knowledge.documents.files, knowledge.documents.configMap, or a knowledge volume (knowledge.persistence.enabled) holding them in documents/" }}
{{- end }}
{{- end }}

{{/* One env entry from the Secret; with an existingSecret every key is optional. */}}
{{- define "switchboard.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "switchboard.secretName" .root }}
      key: {{ .key }}
      {{- if .root.Values.secrets.existingSecret }}
      optional: true
      {{- end }}
{{- end }}

{{/* The environment of every Switchboard container (API, ingest). */}}
{{- define "switchboard.env" -}}
{{- $v := .Values }}
{{- $external := not $v.secrets.existingSecret }}
- name: HOME
  value: /tmp
- name: HF_HOME
  value: /tmp/huggingface
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: SWITCHBOARD_DATA_DIR
  value: /data
- name: SWITCHBOARD_KNOWLEDGE__INDEX_DIR
  value: /kb/index
- name: SWITCHBOARD_KNOWLEDGE__DOCUMENTS_DIR
  value: /kb/documents
- name: SWITCHBOARD_KNOWLEDGE__TOP_K
  value: {{ $v.knowledge.topK | quote }}
- name: SWITCHBOARD_COMPANY_NAME
  value: {{ $v.config.companyName | quote }}
- name: SWITCHBOARD_LOG_LEVEL
  value: {{ $v.config.logLevel | quote }}
- name: SWITCHBOARD_LOG_FORMAT
  value: {{ $v.config.logFormat | quote }}
- name: SWITCHBOARD_KEY_PREFIX
  value: {{ $v.config.keyPrefix | quote }}
- name: SWITCHBOARD_FORWARDED_ALLOW_IPS
  value: {{ $v.config.forwardedAllowIps | quote }}
- name: SWITCHBOARD_POLICY_RELOAD_S
  value: {{ $v.config.policyReloadS | quote }}
{{- with $v.config.publicUrl }}
- name: SWITCHBOARD_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.config.webSites }}
- name: SWITCHBOARD_WEB__SITES
  value: {{ toJson . | quote }}
{{- end }}
{{- with $v.config.slackSupportChannel }}
- name: SWITCHBOARD_SLACK__SUPPORT_CHANNEL
  value: {{ . | quote }}
{{- end }}
{{- if $v.policy }}
- name: SWITCHBOARD_POLICY_FILE
  value: /etc/switchboard/policy.yaml
{{- end }}
{{- if $v.actions }}
- name: SWITCHBOARD_ACTIONS_FILE
  value: /etc/switchboard/actions.yaml
{{- end }}
{{- /* The language model: a vLLM server of this chart, another server, or in-process. */}}
{{- if $v.llm.server.enabled }}
- name: SWITCHBOARD_LLM__ENGINE
  value: openai
- name: SWITCHBOARD_LLM__BASE_URL
  value: {{ printf "http://%s:%d/v1" (include "switchboard.llmServerName" .) (int $v.llm.server.service.port) | quote }}
- name: SWITCHBOARD_LLM__MODEL
  value: {{ $v.llm.server.servedModelName | quote }}
{{- else }}
- name: SWITCHBOARD_LLM__ENGINE
  {{- /* local: in the API pods; auto picks the cpu engine on CPU nodes, transformers on GPUs */}}
  value: {{ ternary "auto" $v.llm.engine (eq $v.llm.engine "local") | quote }}
{{- with $v.llm.baseUrl }}
- name: SWITCHBOARD_LLM__BASE_URL
  value: {{ . | quote }}
{{- end }}
- name: SWITCHBOARD_LLM__MODEL
  value: {{ $v.llm.model | quote }}
{{- end }}
{{- if and (eq $v.llm.engine "local") (not $v.llm.server.enabled) }}
- name: SWITCHBOARD_LLM__DEVICE
  value: {{ ternary "cuda" $v.llm.local.device $v.llm.local.gpu | quote }}
- name: SWITCHBOARD_LLM__DTYPE
  value: {{ $v.llm.local.dtype | quote }}
{{- with $v.llm.local.threads }}
- name: SWITCHBOARD_LLM__THREADS
  value: {{ . | quote }}
{{- end }}
{{- if $v.llm.local.cache.enabled }}
- name: SWITCHBOARD_LLM__CACHE_DIR
  value: /models
{{- end }}
{{- end }}
{{- with $v.llm.tokenizer }}
- name: SWITCHBOARD_LLM__TOKENIZER
  value: {{ . | quote }}
{{- end }}
- name: SWITCHBOARD_LLM__MAX_BATCH_SIZE
  value: {{ $v.llm.maxBatchSize | quote }}
- name: SWITCHBOARD_LLM__MAX_QUEUE
  value: {{ $v.llm.maxQueue | quote }}
- name: SWITCHBOARD_LLM__MAX_NEW_TOKENS
  value: {{ $v.llm.maxNewTokens | quote }}
- name: SWITCHBOARD_LLM__TIMEOUT_S
  value: {{ $v.llm.timeoutS | quote }}
{{- /* Redis: the trial one of this chart (no password), else the Secret's redis-url. */}}
{{- if $v.redis.enabled }}
- name: SWITCHBOARD_REDIS_URL
  value: {{ printf "redis://%s:%d/0" (include "switchboard.redisName" .) (int $v.redis.service.port) | quote }}
{{- else if or $v.redis.url $v.secrets.existingSecret }}
{{- include "switchboard.secretEnv" (dict "root" . "env" "SWITCHBOARD_REDIS_URL" "key" "redis-url") | nindent 0 }}
{{- end }}
{{- /* Secrets: every key of an existingSecret (each optional), or those set in values. */}}
{{- $keys := list
      (list "SWITCHBOARD_ADMIN_API_KEY" "admin-api-key" $v.secrets.adminApiKey)
      (list "SWITCHBOARD_SLACK__SIGNING_SECRET" "slack-signing-secret" $v.secrets.slackSigningSecret)
      (list "SWITCHBOARD_SLACK__BOT_TOKEN" "slack-bot-token" $v.secrets.slackBotToken)
      (list "SWITCHBOARD_WEBHOOKS" "webhooks" $v.secrets.webhooks)
      (list "SWITCHBOARD_LLM__API_KEY" "llm-api-key" $v.secrets.llmApiKey)
      (list "SWITCHBOARD_WEB__SECRET" "web-secret" $v.secrets.webSecret) }}
{{- range $keys }}
{{- if or $v.secrets.existingSecret (index . 2) }}
{{ include "switchboard.secretEnv" (dict "root" $ "env" (index . 0) "key" (index . 1)) }}
{{- end }}
{{- end }}
{{- with $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ default (include "switchboard.fullname" $) $v.otel.serviceName | quote }}
- name: SWITCHBOARD_OTEL_SERVICE_NAME
  value: {{ default (include "switchboard.fullname" $) $v.otel.serviceName | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes both the API and the ingest pods mount. */}}
{{- define "switchboard.kbVolume" -}}
- name: kb
{{- if .Values.knowledge.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-kb" (include "switchboard.fullname" .)) .Values.knowledge.persistence.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.knowledge.emptyDirSizeLimit }}
{{- end }}
{{- end }}

{{- define "switchboard.documentsVolume" -}}
{{- with include "switchboard.documentsConfigMap" . }}
- name: documents
  configMap:
    name: {{ . }}
{{- end }}
{{- end }}

{{/* The `switchboard kb ingest` container (a Job, a CronJob or an init container). */}}
{{- define "switchboard.ingestContainer" -}}
- name: ingest
  image: {{ include "switchboard.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["switchboard", "kb", "ingest", {{ include "switchboard.ingestSource" . | quote }}{{ if .Values.knowledge.ingest.rebuild }}, "--rebuild"{{ end }}]
  env:
    {{- include "switchboard.env" . | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.knowledge.ingest.resources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: data
      mountPath: /data
    - name: kb
      mountPath: /kb
    {{- if include "switchboard.documentsConfigMap" . }}
    - name: documents
      mountPath: /documents
      readOnly: true
    {{- end }}
{{- end }}
