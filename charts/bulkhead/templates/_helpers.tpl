{{/*
Labels on every object the chart renders (metadata only; pods carry their own, smaller sets).
*/}}
{{- define "bulkhead.labels" -}}
app.kubernetes.io/name: bulkhead
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | quote }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The operator's pod labels, also its Deployment's selector (never changed: selectors are immutable).
*/}}
{{- define "bulkhead.operator.podLabels" -}}
app.kubernetes.io/name: bulkhead
app.kubernetes.io/component: operator
{{- end }}

{{/*
The CRD hook's pod labels.
*/}}
{{- define "bulkhead.crds.podLabels" -}}
app.kubernetes.io/name: bulkhead
app.kubernetes.io/component: crds
{{- end }}

{{/*
A component's image: {root, image}.
*/}}
{{- define "bulkhead.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end }}

{{/*
A label map as key=value,key=value (sorted by key), as the operator's label flags take it.
*/}}
{{- define "bulkhead.labelsFlag" -}}
{{- $pairs := list -}}
{{- range $key := keys . | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s=%s" $key (get $ $key)) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end }}

{{/*
The pod and container security contexts every Bulkhead pod runs with: what Pod Security `restricted` asks for.
*/}}
{{- define "bulkhead.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "bulkhead.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The API server as NetworkPolicy peers: {"cidrs": [...], "ports": [...]}. From networkPolicy.apiServer.cidrs, else
looked up from the `kubernetes` EndpointSlice (or Endpoints) and Service in `default`; the ports are
networkPolicy.apiServer.ports plus those found. Empty cidrs means the lookup found nothing (helm template).
*/}}
{{- define "bulkhead.apiServer" -}}
{{- $cidrs := list -}}
{{- $ports := list -}}
{{- range .Values.networkPolicy.apiServer.ports -}}
{{- $ports = append $ports (int .) -}}
{{- end -}}
{{- if .Values.networkPolicy.apiServer.cidrs -}}
{{- $cidrs = .Values.networkPolicy.apiServer.cidrs -}}
{{- else -}}
{{- $addresses := list -}}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" -}}
{{- if $slice -}}
{{- range $slice.endpoints | default list -}}
{{- range .addresses | default list -}}
{{- $addresses = append $addresses . -}}
{{- end -}}
{{- end -}}
{{- range $slice.ports | default list -}}
{{- $ports = append $ports (int .port) -}}
{{- end -}}
{{- else -}}
{{- $endpoints := lookup "v1" "Endpoints" "default" "kubernetes" -}}
{{- range $endpoints.subsets | default list -}}
{{- range .addresses | default list -}}
{{- $addresses = append $addresses .ip -}}
{{- end -}}
{{- range .ports | default list -}}
{{- $ports = append $ports (int .port) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $addresses -}}
{{- $service := lookup "v1" "Service" "default" "kubernetes" -}}
{{- if $service -}}
{{- range $service.spec.clusterIPs | default list -}}
{{- $addresses = append $addresses . -}}
{{- end -}}
{{- range $service.spec.ports | default list -}}
{{- $ports = append $ports (int .port) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $addresses | uniq -}}
{{- $cidrs = append $cidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) -}}
{{- end -}}
{{- end -}}
{{- dict "cidrs" ($cidrs | uniq) "ports" ($ports | uniq) | toJson -}}
{{- end }}

{{/*
An egress rule to the API server (see bulkhead.apiServer); without known addresses, the ports to anywhere.
*/}}
{{- define "bulkhead.apiServerEgress" -}}
{{- $api := include "bulkhead.apiServer" . | fromJson -}}
{{- $ports := list -}}
{{- range $api.ports -}}
{{- $ports = append $ports (dict "protocol" "TCP" "port" (int .)) -}}
{{- end -}}
{{- $rule := dict "ports" $ports -}}
{{- if $api.cidrs -}}
{{- $to := list -}}
{{- range $api.cidrs -}}
{{- $to = append $to (dict "ipBlock" (dict "cidr" .)) -}}
{{- end -}}
{{- $_ := set $rule "to" $to -}}
{{- end -}}
{{- list $rule | toYaml -}}
{{- end }}

{{/*
An egress rule to the cluster DNS pods.
*/}}
{{- define "bulkhead.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.dns.namespace | quote }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.dns.podLabels | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}

{{/*
Checks across values that the schema cannot express; each failure names the value.
*/}}
{{- define "bulkhead.validate" -}}
{{- $gatewayLabels := .Values.gateway.podLabels -}}
{{- range $component, $labels := dict "operator" (include "bulkhead.operator.podLabels" . | fromYaml) "CRD hook" (include "bulkhead.crds.podLabels" . | fromYaml) -}}
{{- $all := true -}}
{{- range $key, $value := $gatewayLabels -}}
{{- if ne (get $labels $key | toString) ($value | toString) -}}
{{- $all = false -}}
{{- end -}}
{{- end -}}
{{- if $all -}}
{{- fail (printf "gateway.podLabels: %s would also select the %s's pods (%s), which the tenants' NetworkPolicies would then admit" (include "bulkhead.labelsFlag" $gatewayLabels) $component (include "bulkhead.labelsFlag" $labels)) -}}
{{- end -}}
{{- end -}}
{{- if eq (int .Values.gateway.proxyPort) (int .Values.gateway.adminPort) -}}
{{- fail "gateway.adminPort: must differ from gateway.proxyPort" -}}
{{- end -}}
{{- if eq (int .Values.gateway.service.port) (int .Values.gateway.service.adminPort) -}}
{{- fail "gateway.service.adminPort: must differ from gateway.service.port" -}}
{{- end -}}
{{- if and .Values.operator.pdb.enabled (gt (int .Values.operator.replicas) 1) (ge (int .Values.operator.pdb.minAvailable) (int .Values.operator.replicas)) -}}
{{- fail "operator.pdb.minAvailable: must be below operator.replicas, or no node could ever be drained" -}}
{{- end -}}
{{- $gatewayReplicas := ternary .Values.gateway.autoscaling.minReplicas .Values.gateway.replicas .Values.gateway.autoscaling.enabled -}}
{{- if and .Values.gateway.pdb.enabled (gt (int $gatewayReplicas) 1) (ge (int .Values.gateway.pdb.minAvailable) (int $gatewayReplicas)) -}}
{{- fail "gateway.pdb.minAvailable: must be below the gateway's replicas (gateway.replicas, or gateway.autoscaling.minReplicas), or no node could ever be drained" -}}
{{- end -}}
{{- if gt (int .Values.gateway.autoscaling.minReplicas) (int .Values.gateway.autoscaling.maxReplicas) -}}
{{- fail "gateway.autoscaling.minReplicas: must not be above gateway.autoscaling.maxReplicas" -}}
{{- end -}}
{{- if le (int .Values.gateway.terminationGracePeriodSeconds) (int .Values.gateway.proxy.shutdownGraceSeconds) -}}
{{- fail "gateway.terminationGracePeriodSeconds: must be more than gateway.proxy.shutdownGraceSeconds" -}}
{{- end -}}
{{- $issuers := dict -}}
{{- range $i, $issuer := .Values.gateway.issuers -}}
{{- $field := printf "gateway.issuers[%d]" $i -}}
{{- if hasKey $issuers $issuer.issuer -}}
{{- fail (printf "%s.issuer: %s is listed twice" $field $issuer.issuer) -}}
{{- end -}}
{{- $_ := set $issuers $issuer.issuer true -}}
{{- $sources := 0 -}}
{{- if $issuer.jwksUrl }}{{ $sources = add1 $sources }}{{ end -}}
{{- if $issuer.jwksSecret }}{{ $sources = add1 $sources }}{{ end -}}
{{- if $issuer.keySecret }}{{ $sources = add1 $sources }}{{ end -}}
{{- if ne (int $sources) 1 -}}
{{- fail (printf "%s: exactly one of jwksUrl, jwksSecret, keySecret is required" $field) -}}
{{- end -}}
{{- if $issuer.keySecret -}}
{{- range $k, $key := $issuer.keySecret.keys -}}
{{- if not (has $key.algorithm $issuer.algorithms) -}}
{{- fail (printf "%s.keySecret.keys[%d].algorithm: %s is not in the issuer's algorithms" $field $k $key.algorithm) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}
