{{/*
Where an issuer's Secret is mounted in the gateway's pods: /etc/bulkhead/keys/<index of the issuer>.
*/}}
{{- define "bulkhead.gateway.keysDir" -}}
{{- printf "/etc/bulkhead/keys/%d" (int .) -}}
{{- end }}

{{/*
The gateway's configuration file (gateway/src/config.rs), from gateway.*.
*/}}
{{- define "bulkhead.gateway.config" -}}
{{- $g := .Values.gateway -}}
{{- $issuers := list -}}
{{- range $i, $in := $g.issuers -}}
{{- $dir := include "bulkhead.gateway.keysDir" $i -}}
{{- $out := dict "issuer" $in.issuer "algorithms" $in.algorithms -}}
{{- if $in.jwksUrl -}}
{{- $_ := set $out "jwks_url" $in.jwksUrl -}}
{{- else if $in.jwksSecret -}}
{{- $_ := set $out "jwks_file" (printf "%s/%s" $dir $in.jwksSecret.key) -}}
{{- else if $in.keySecret -}}
{{- $pems := list -}}
{{- range $in.keySecret.keys -}}
{{- $pems = append $pems (dict "kid" .kid "algorithm" .algorithm "path" (printf "%s/%s" $dir .key)) -}}
{{- end -}}
{{- $_ := set $out "pem_keys" $pems -}}
{{- end -}}
{{- $_ := set $out "org_claim" ($in.orgClaim | default "clerk") -}}
{{- if hasKey $in "orgPrefix" -}}
{{- $_ := set $out "org_prefix" $in.orgPrefix -}}
{{- end -}}
{{- $_ := set $out "org_max_len" (int64 ($in.orgMaxLen | default 64)) -}}
{{- $_ := set $out "allowed_azp" ($in.allowedAzp | default list) -}}
{{- $_ := set $out "require_azp" ($in.requireAzp | default false) -}}
{{- $aud := $in.aud | default dict -}}
{{- $mode := $aud.mode | default "ignore" -}}
{{- if eq $mode "require" -}}
{{- $_ := set $out "aud" (dict "mode" "require" "values" $aud.values) -}}
{{- else -}}
{{- $_ := set $out "aud" (dict "mode" $mode) -}}
{{- end -}}
{{- $issuers = append $issuers $out -}}
{{- end -}}
{{- $config := dict
  "listen" (printf "0.0.0.0:%d" (int $g.proxyPort))
  "admin" (printf "0.0.0.0:%d" (int $g.adminPort))
  "issuers" $issuers
  "tokens" (dict
    "max_bytes" (int64 $g.tokens.maxBytes)
    "leeway_seconds" (int64 $g.tokens.leewaySeconds)
    "max_lifetime_seconds" (int64 $g.tokens.maxLifetimeSeconds)
    "allowed_typ" ($g.tokens.allowedTyp | default list))
  "keys" (dict
    "refresh_seconds" (int64 $g.keys.refreshSeconds)
    "retry_seconds" (int64 $g.keys.retrySeconds)
    "unknown_kid_refetch_seconds" (int64 $g.keys.unknownKidRefetchSeconds)
    "fetch_timeout_ms" (int64 $g.keys.fetchTimeoutMs)
    "max_jwks_bytes" (int64 $g.keys.maxJwksBytes)
    "max_keys" (int64 $g.keys.maxKeys))
  "cache" (dict "max_entries" (int64 $g.cache.maxEntries))
  "routes" (dict "source" "kubernetes" "service_suffix" $g.routes.serviceSuffix)
  "proxy" (dict
    "forward_authorization" $g.proxy.forwardAuthorization
    "max_body_bytes" (int64 $g.proxy.maxBodyBytes)
    "max_header_bytes" (int64 $g.proxy.maxHeaderBytes)
    "header_read_timeout_ms" (int64 $g.proxy.headerReadTimeoutMs)
    "upstream_timeout_ms" (int64 $g.proxy.upstreamTimeoutMs)
    "upstream_body_idle_ms" (int64 $g.proxy.upstreamBodyIdleMs)
    "connect_timeout_ms" (int64 $g.proxy.connectTimeoutMs)
    "pool_idle_seconds" (int64 $g.proxy.poolIdleSeconds)
    "shutdown_grace_seconds" (int64 $g.proxy.shutdownGraceSeconds)
    "max_in_flight" (int64 $g.proxy.maxInFlight)
    "max_tunnel_seconds" (int64 $g.proxy.maxTunnelSeconds)
    "max_tunnels_per_org" (int64 $g.proxy.maxTunnelsPerOrg))
  "audit" (dict "checkpoint_seconds" (int64 $g.audit.checkpointSeconds))
-}}
{{- if $g.rateLimit.enabled -}}
{{- $_ := set $config "rate_limit" (dict "per_second" (float64 $g.rateLimit.perSecond) "burst" (int64 $g.rateLimit.burst)) -}}
{{- end -}}
{{- if $g.cors.enabled -}}
{{- $cors := dict "allowed_origins" $g.cors.allowedOrigins "max_age_seconds" (int64 $g.cors.maxAgeSeconds) "allow_credentials" $g.cors.allowCredentials -}}
{{- with $g.cors.allowedMethods }}{{ $_ := set $cors "allowed_methods" . }}{{ end -}}
{{- with $g.cors.allowedHeaders }}{{ $_ := set $cors "allowed_headers" . }}{{ end -}}
{{- with $g.cors.exposedHeaders }}{{ $_ := set $cors "exposed_headers" . }}{{ end -}}
{{- $_ := set $config "cors" $cors -}}
{{- end -}}
{{- toYaml $config -}}
{{- end }}
