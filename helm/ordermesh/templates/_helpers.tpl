{{/* The name of one context's objects: <release>-<context>. */}}
{{- define "ordermesh.name" -}}
{{- printf "%s-%s" .root.Release.Name .context | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries; the selector uses the last two. */}}
{{- define "ordermesh.labels" -}}
app.kubernetes.io/part-of: ordermesh
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version }}
{{ include "ordermesh.selector" . }}
{{- end -}}

{{- define "ordermesh.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/name: {{ .context }}
{{- end -}}

{{/* The restricted Pod Security profile, for every container. */}}
{{- define "ordermesh.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* gRPC address of a context, through its headless Service: every pod's
address, balanced by the client (round_robin), not one connection to one pod. */}}
{{- define "ordermesh.address" -}}
dns:///{{ include "ordermesh.name" . }}-headless:50051
{{- end -}}

{{/* A health probe of one gRPC health service: the kubelet's native gRPC probe,
or, with mutual TLS, `python -m mesh.probe` inside the container (it presents
the pod's certificate; the kubelet's probe cannot). */}}
{{- define "ordermesh.probe" -}}
{{- if .root.Values.tls.enabled -}}
exec:
  command: ["python3", "-m", "mesh.probe", {{ .service | quote }}]
{{- else -}}
grpc: {port: 50051, service: {{ .service | quote }}}
{{- end -}}
{{- end -}}
