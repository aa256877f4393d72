"""Envoy v3 bootstrap for the REST+gRPC front of the GLiNER2 service.

One listener (``codec_type: AUTO``: HTTP/1.1 and h2c on the same port) serves
both REST/JSON, transcoded by ``envoy.filters.http.grpc_json_transcoder``, and
native gRPC, which the transcoder passes through untouched (it only acts on
requests whose ``content-type`` is not ``application/grpc``/``grpc+...``).

HTTP filter order (decode order; responses run through it in reverse):

1. ``envoy.filters.http.lua`` - shapes upstream gRPC failures of REST requests
   (see :mod:`.lua`) and flags native gRPC requests. First, so it sees every
   response.
2. ``envoy.filters.http.health_check`` - ``/healthz`` answered by Envoy
   (``pass_through_mode: false``) from ``cluster_min_healthy_percentages``.
3. ``envoy.filters.http.buffer`` - REST bodies over ``max_request_bytes`` get
   413. The transcoder streams request bodies, so its own
   ``max_request_body_size`` alone does not bound them. Disabled per route
   for native gRPC (a buffered bidi stream would deadlock).
4. ``envoy.filters.http.grpc_json_transcoder``.
5. ``envoy.filters.http.router``.

Routes: native gRPC (``match.grpc``) first; then one 405 route per transcoded
path template (see :mod:`.routes`); then everything else to the cluster, where
the transcoder answers 404 for unknown paths (``reject_unknown_method``).

Envoy's own errors (transcoder parse failures, 404, 405, 413, 503 no healthy
upstream, 504, codec errors) are *local replies*, shaped by
``local_reply_config`` mappers with ``json_format``. That is the only mechanism
that also reaches replies sent while encoding or before any filter ran (the
transcoder's "response too large" 500, an HTTP/1 parse error). Upstream gRPC
errors are not local replies; the Lua filter shapes those.

Everything derived from the error table comes from
:func:`gliner_server.grpc_api.status.http_mapping_by_grpc_code` and
:class:`gliner_server.errors.ErrorKind`; nothing is copied by hand.
"""
from __future__ import annotations

import base64
import http
import json
import math
from dataclasses import dataclass

from google.protobuf import descriptor_pb2

from ..dialects import anthropic_api, openai_api
from ..errors import ErrorKind
from ..grpc_api.status import dialect_types_by_grpc_code, http_mapping_by_grpc_code
from .descriptors import http_rules
from .lua import METADATA_NAMESPACE, render_lua
from .routes import method_not_allowed_routes

CLUSTER = "gliner_grpc"
OPENAPI_PATH = "/openapi.json"
HEALTHZ_PATH = "/healthz"
# HTTP statuses only Envoy produces: their provider code and error.type (OpenAI's, Anthropic's); the rest
# come from the error table.
_ENVOY_ONLY = {405: ("METHOD_NOT_ALLOWED", ("invalid_request_error", "invalid_request_error")),
               408: ("TIMEOUT", ("timeout_error", "timeout_error"))}
_UNHEALTHY_MESSAGE = "No healthy upstream"


@dataclass(kw_only=True)
class EnvoySettings:
    """What :func:`render_config` needs; every address/port is explicit."""

    listen_port: int
    admin_port: int  # admin is bound to 127.0.0.1 only
    upstreams: list[tuple[str, int]]  # gRPC server replicas
    services: list[str]  # fully-qualified services to transcode
    # FileDescriptorSet file (descriptors.py); EnvoyProcess fills it in. When
    # empty, render_config inlines the bytes (proto_descriptor_bin) instead.
    descriptor_path: str = ""
    listen_host: str = "0.0.0.0"
    max_request_bytes: int = 1 << 20
    max_response_bytes: int = 64 << 20
    route_timeout_s: float = 60.0
    connect_timeout_s: float = 1.0
    health_check_interval_s: float = 1.0
    # Hosts marked unhealthy (a replica still loading, or restarting) are checked this
    # often, so one that turns SERVING takes traffic within a fraction of a second. (50 ms
    # would save a start 0.1 s on average, but then a second replica that had just turned
    # healthy often got no traffic at first: tests/test_scale_out.py failed 2 runs in 3.)
    unhealthy_check_interval_s: float = 0.2
    health_check_timeout_s: float = 1.0
    health_check_service: str = ""  # grpc.health.v1 service name; "" = whole server
    unhealthy_threshold: int = 2
    healthy_threshold: int = 1
    # One line per request (never a body, a key or a query's values): "stdout" (Envoy's standard output,
    # which gliner2-serve shares), a file path, or None for no access log.
    access_log: str | None = None
    access_log_json: bool = False   # one JSON object per line (ACCESS_LOG_JSON), as gliner2-serve --log-format json
    # Per API key (x-api-key or Authorization header value): requests per second, and
    # the burst allowed above it. None: no per-key limit. Keys never appear in the config.
    rate_limit_rps: int | None = None
    rate_limit_burst: int | None = None
    max_rate_limited_keys: int = 10_000  # distinct keys tracked (least recently used dropped)
    openapi_json: str | None = None      # served at GET /openapi.json (no key needed)
    tls_cert_path: str | None = None     # PEM; with tls_key_path, the listener speaks TLS only
    tls_key_path: str | None = None
    # Files instead of inline text (gliner2-envoy-config's static envoy/ folder; relative paths resolve
    # against Envoy's working directory): the Lua filter's source, and the document at GET /openapi.json.
    lua_path: str = ""
    openapi_path: str = ""


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _kinds_by_http() -> dict[int, ErrorKind]:
    """HTTP status -> the first kind of the error table with that status."""
    table: dict[int, ErrorKind] = {}
    for kind in ErrorKind:
        table.setdefault(kind.http_status, kind)
    return table


def http_code_table() -> dict[int, str]:
    """HTTP status -> provider code, from the error table (first kind wins), and Envoy's own statuses."""
    table = {status: kind.provider_code for status, kind in _kinds_by_http().items()}
    for status, (code, _) in _ENVOY_ONLY.items():
        table.setdefault(status, code)
    return table


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _grpc_request() -> dict:
    """True when the Lua filter flagged the request as native gRPC.

    Not a ``content-type`` header filter: the transcoder rewrites a REST
    request's ``content-type`` to ``application/grpc`` before it parses the
    body, so its own 400s would look like gRPC. (Envoy 1.40 ignores
    ``MetadataMatcher.invert`` inside an access-log ``metadata_filter``, so
    "not gRPC" is expressed by a first, rewrite-free mapper instead.)
    """
    return {"metadata_filter": {
        "matcher": {"filter": METADATA_NAMESPACE, "path": [{"key": "grpc"}], "value": {"bool_match": True}},
        "match_if_key_not_found": False,
    }}


def _status_filter(op: str, status: int) -> dict:
    return {"status_code_filter": {"comparison": {
        "op": op, "value": {"default_value": status, "runtime_key": f"gliner.local_reply.{status}"},
    }}}


def _error_format(code: str, dialect: str | None = None, error_type: str | None = None) -> dict:
    """The error shape (see :mod:`.lua`): the provider's, or with what the OpenAI / Anthropic SDKs read."""
    error = {"code": code, "message": "%LOCAL_REPLY_BODY%"}
    shape: dict = {"error": error, "detail": "%LOCAL_REPLY_BODY%"}
    if dialect is not None:
        error["type"] = error_type
    if dialect == "anthropic":
        shape["type"] = "error"
    return {"json_format": shape}


# Routes whose errors take an LLM SDK's shape (the Lua filter tags requests with their dialect).
DIALECT_PATHS = {
    openai_api.CHAT_ROUTE: "openai", openai_api.COMPLETIONS_ROUTE: "openai", openai_api.RESPONSES_ROUTE: "openai",
    anthropic_api.ROUTE: "anthropic",
    # where an Anthropic SDK whose base_url ends in /v1 (as Pioneer's documentation has it) sends its calls
    "/v1" + anthropic_api.ROUTE: "anthropic", "/v1/v1/models": "anthropic",
}
MODELS_PATH = "/v1/models"   # both SDKs list models here: Anthropic's when an anthropic-version header comes along
DIALECTS = ("openai", "anthropic")


def dialect_types_by_http() -> dict[int, tuple[str, str]]:
    """HTTP status -> (OpenAI error.type, Anthropic error.type), as :func:`http_code_table` gives codes."""
    table = {status: (kind.error_type("openai"), kind.error_type("anthropic"))
             for status, kind in _kinds_by_http().items()}
    for status, (_, types) in _ENVOY_ONLY.items():
        table.setdefault(status, types)
    return table


def _dialect_filter(dialect: str) -> dict:
    return {"metadata_filter": {
        "matcher": {"filter": METADATA_NAMESPACE, "path": [{"key": "dialect"}],
                    "value": {"string_match": {"exact": dialect}}},
        "match_if_key_not_found": False,
    }}


def _status_mappers(dialect: str | None = None) -> list[dict]:
    """Envoy's own error statuses in one error shape: the per-key rate limit's, each status of the table,
    and the fallbacks for any other 5xx / 4xx."""
    types = dialect_types_by_http()
    which = 0 if dialect == "openai" else 1

    def mapper(status_filter: dict, status: int, code: str, **extra) -> dict:
        matched = status_filter if dialect is None else {"and_filter": {"filters": [
            _dialect_filter(dialect), status_filter]}}
        return {"filter": matched, **extra,
                "body_format_override": _error_format(code, dialect, types[status][which])}

    # the per-API-key rate limit: its own status, told apart from the server's 429s, becomes 429
    # (the filter sets its RL response flag only after the local reply has been mapped)
    mappers = [mapper(_status_filter("EQ", RATE_LIMIT_STATUS), 429, ErrorKind.RATE_LIMITED.provider_code,
                      status_code=429, body={"inline_string": RATE_LIMITED_MESSAGE})]
    specific = [(s, c, "EQ") for s, c in sorted(http_code_table().items())]
    fallbacks = [(500, ErrorKind.SERVER_ERROR.provider_code, "GE"),
                 (400, ErrorKind.INVALID_REQUEST.provider_code, "GE")]
    mappers += [mapper(_status_filter(op, status), status, code) for status, code, op in specific + fallbacks]
    return mappers


def _local_reply_config() -> dict:
    """Mappers turning every REST local reply >= 400 into the error shape.

    Mappers are tried in order and the first match wins: native gRPC requests
    hit a mapper that rewrites nothing (Envoy then sends its usual
    trailers-only gRPC status). ``json_format`` does the JSON escaping. The
    health check's 503 has an empty body, so it gets a ``body`` first
    (``%LOCAL_REPLY_BODY%`` would be empty).
    """
    mappers = [
        {"filter": _grpc_request()},
        {
            "filter": {"and_filter": {"filters": [
                _status_filter("GE", 400),
                {"header_filter": {"header": {"name": ":path", "string_match": {"exact": HEALTHZ_PATH}}}},
            ]}},
            "body": {"inline_string": _UNHEALTHY_MESSAGE},
            "body_format_override": _error_format(ErrorKind.UNAVAILABLE.provider_code),
        },
        {   # paths Envoy's normaliser refuses before routing (an encoded NUL, a fragment) get no body of their own
            "filter": {"and_filter": {"filters": [
                _status_filter("EQ", 400),
                {"header_filter": {"header": {"name": ":path", "string_match": {"safe_regex": {
                    "regex": MALFORMED_PATH_REGEX}}}}},
            ]}},
            "body": {"inline_string": MALFORMED_PATH_MESSAGE},
            "body_format_override": _error_format(ErrorKind.INVALID_REQUEST.provider_code),
        },
    ]
    for dialect in (*DIALECTS, None):   # the LLM routes' shapes first; then the provider's, for every other
        mappers += _status_mappers(dialect)
    return {"mappers": mappers}


def _descriptor_source(settings: EnvoySettings, descriptor: bytes) -> dict:
    if settings.descriptor_path:
        return {"proto_descriptor": settings.descriptor_path}
    return {"proto_descriptor_bin": base64.b64encode(descriptor).decode()}


MALFORMED_PATH_REGEX = r"(?i).*(%00|#).*"
MALFORMED_PATH_MESSAGE = ("The request path is malformed: it contains an encoded NUL byte (%00) or a fragment (#), "
                          "which no route takes")
RATE_LIMIT_STATUS = 423  # what the rate limit filter answers (nothing else here uses it); mapped to 429
RATE_LIMITED_MESSAGE = "Rate limit exceeded for this API key; retry after Retry-After seconds"
_ALWAYS = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def _rate_limit_filters(settings: EnvoySettings) -> list[dict]:
    """Per-API-key token buckets (Envoy's local rate limit with dynamic descriptors): 429 in the provider shape.

    One bucket per distinct key value, created on first use (the keys are never
    written into the configuration); requests without a key are not limited here
    (the server answers them 401). Native gRPC callers get RESOURCE_EXHAUSTED.
    """
    if not settings.rate_limit_rps:
        return []
    rps = settings.rate_limit_rps
    burst = settings.rate_limit_burst or rps
    bucket = {"max_tokens": burst, "tokens_per_fill": rps, "fill_interval": "1s"}
    headers = (("x-api-key", "api_key"), ("authorization", "authorization"))
    return [{"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "per_api_key",
        # The filter-wide bucket only backs the per-key ones: effectively unlimited.
        "token_bucket": {"max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000, "fill_interval": "1s"},
        "filter_enabled": _ALWAYS,
        "filter_enforced": _ALWAYS,
        "max_dynamic_descriptors": settings.max_rate_limited_keys,
        "rate_limits": [{"actions": [{"request_headers": {"header_name": header, "descriptor_key": key,
                                                          "skip_if_absent": True}}]}
                        for header, key in headers],
        "descriptors": [{"entries": [{"key": key}], "token_bucket": bucket} for _, key in headers],
        "response_headers_to_add": [{"append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                     "header": {"key": "retry-after", "value": "1"}}],
        "status": {"code": RATE_LIMIT_STATUS},
        "rate_limited_as_resource_exhausted": True,
    }}]


def _http_filters(settings: EnvoySettings, lua_source: str, descriptor: bytes) -> list[dict]:
    return [
        {"name": "envoy.filters.http.lua", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": ({"filename": settings.lua_path} if settings.lua_path
                                    else {"inline_string": lua_source}),
        }},
        {"name": "envoy.filters.http.health_check", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
            "pass_through_mode": False,
            "headers": [{"name": ":path", "string_match": {"exact": HEALTHZ_PATH}}],
            # Healthy iff >= one host is: one host of N is 100/N percent.
            "cluster_min_healthy_percentages": {
                CLUSTER: {"value": math.floor(100_000 / len(settings.upstreams)) / 1000},
            },
        }},
        *_rate_limit_filters(settings),
        {"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": settings.max_request_bytes,
        }},
        {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            **_descriptor_source(settings, descriptor),
            "services": list(settings.services),
            "print_options": {
                "add_whitespace": False,
                "always_print_primitive_fields": True,
                "preserve_proto_field_names": True,
            },
            "auto_mapping": False,
            # 404 for unknown paths instead of passing them upstream (a 503);
            # 400 for query parameters no field takes.
            "request_validation_options": {
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
            },
            # Unknown JSON *body* fields have no switch: the transcoder drops
            # them silently, which matches the lenient hosted API.
            # A gRPC error always gets a google.rpc.Status JSON body, even when
            # the server sent headers before failing; the Lua filter rewrites
            # that body (it cannot create one from nothing).
            "convert_grpc_status": True,
            "max_request_body_size": settings.max_request_bytes,
            # Unary responses are buffered whole; the default cap is the
            # connection buffer (1 MiB), beyond which it answers 500.
            "max_response_body_size": settings.max_response_bytes,
        }},
        {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        }},
    ]


def _upstream_route(settings: EnvoySettings) -> dict:
    return {
        "cluster": CLUSTER,
        # Applies to REST and native gRPC alike. Deliberately no
        # max_stream_duration.grpc_timeout_header_max: with it, a call without
        # a grpc-timeout header - every transcoded REST call - has no timeout.
        "timeout": _duration(settings.route_timeout_s),
        # Only what is safe to retry: the request never reached a server (connection refused
        # or failed, a stream refused, a reset before the request was sent) or a server said
        # UNAVAILABLE (draining, still loading a model, the history unavailable). A reset
        # after the request was sent is *not* retried: the request may have crashed that
        # replica, and would crash each survivor in turn. A retry of a call that was recorded
        # anyway is stored once (the history deduplicates by request id). Hosts already
        # tried are avoided, and the cluster's retry budget caps retries under load.
        "retry_policy": {
            "retry_on": "connect-failure,refused-stream,reset-before-request,unavailable",
            "num_retries": max(2, len(settings.upstreams)),
            "retry_host_predicate": [{
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
                                          "PreviousHostsPredicate"},
            }],
            "host_selection_retry_max_attempts": 5,
        },
    }


def _routes(settings: EnvoySettings, fds: descriptor_pb2.FileDescriptorSet) -> list[dict]:
    disabled = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
    grpc_route = {
        "name": "grpc",
        "match": {"prefix": "/", "grpc": {}},
        "route": _upstream_route(settings),
        "typed_per_filter_config": {"envoy.filters.http.buffer": disabled},
    }
    not_allowed = method_not_allowed_routes(
        http_rules(fds, settings.services),
        {"envoy.filters.http.grpc_json_transcoder": disabled, "envoy.filters.http.buffer": disabled},
    )
    rest_route = {"name": "rest", "match": {"prefix": "/"}, "route": _upstream_route(settings)}
    openapi = []
    if settings.openapi_json or settings.openapi_path:
        body = ({"filename": settings.openapi_path} if settings.openapi_path
                else {"inline_string": settings.openapi_json})
        openapi = [{
            "name": "openapi",
            "match": {"path": OPENAPI_PATH, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
            "direct_response": {"status": 200, "body": body},
            "response_headers_to_add": [{"append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                         "header": {"key": "content-type", "value": "application/json"}}],
            "typed_per_filter_config": {"envoy.filters.http.grpc_json_transcoder": disabled},
        }]
    return [grpc_route, *openapi, *not_allowed, rest_route]


ACCESS_LOG_FORMAT = (
    # the REST path as the client sent it (the transcoder rewrites :path to the gRPC method), without the query
    '[%START_TIME%] envoy access: request_id=%REQ(X-REQUEST-ID)% "%REQ(:METHOD)% '
    '%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" status=%RESPONSE_CODE% '
    "grpc=%GRPC_STATUS_NUMBER% flags=%RESPONSE_FLAGS% in=%BYTES_RECEIVED% out=%BYTES_SENT% "
    "duration_ms=%DURATION% upstream_ms=%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% upstream=%UPSTREAM_HOST% "
    "attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT%\n"
)


# The same fields as one JSON object per line (gliner2-serve --log-format json); numbers stay numbers.
ACCESS_LOG_JSON = {
    "time": "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%", "level": "INFO", "logger": "envoy.access",
    "message": "%REQ(:METHOD)% %REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "request_id": "%REQ(X-REQUEST-ID)%", "method": "%REQ(:METHOD)%",
    "route": "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%", "protocol": "%PROTOCOL%",
    "http_status": "%RESPONSE_CODE%", "grpc_status": "%GRPC_STATUS_NUMBER%", "flags": "%RESPONSE_FLAGS%",
    "bytes_in": "%BYTES_RECEIVED%", "bytes_out": "%BYTES_SENT%", "latency_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", "upstream": "%UPSTREAM_HOST%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
}


def _access_log(target: str, as_json: bool = False) -> list[dict]:
    source = {"json_format": ACCESS_LOG_JSON} if as_json else \
        {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}
    log_format = {**source, "formatters": [{
        "name": "envoy.formatter.req_without_query",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.formatter.req_without_query.v3."
                                  "ReqWithoutQuery"},
    }]}
    if target == "stdout":
        return [{"name": "envoy.access_loggers.stdout", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": log_format,
        }}]
    return [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": target,
        "log_format": log_format,
    }}]


def _cluster(settings: EnvoySettings) -> dict:
    by_name = any(not _is_ip(h) for h, _ in settings.upstreams)
    return {
        "name": CLUSTER,
        "type": "STRICT_DNS" if by_name else "STATIC",
        # every address a name resolves to is a host; IPv4 ones where there are any (servers bind
        # 0.0.0.0 by default, and "localhost" resolves to ::1 first), re-resolved every 5 s
        **({"dns_lookup_family": "V4_PREFERRED", "dns_refresh_rate": "5s"} if by_name else {}),
        "connect_timeout": _duration(settings.connect_timeout_s),
        "lb_policy": "LEAST_REQUEST",
        # Retries may add at most a fifth to the requests in flight (at least 3 at once): a fleet in
        # trouble is not buried under its own retries.
        "circuit_breakers": {"thresholds": [{
            "priority": "DEFAULT",
            "retry_budget": {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 3},
        }]},
        # Never route to a replica its health check calls unhealthy (default
        # panic mode would spray all hosts once < 50 % are healthy).
        "common_lb_config": {"healthy_panic_threshold": {"value": 0.0}},
        # A replica that fails requests (refused or reset connections, 5xx) is taken out
        # at once, before its health check notices: a SIGKILLed replica stops getting
        # traffic after a few failures. Never more than half of the replicas, and a
        # lone replica is never ejected (its health check decides).
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 2,
            "consecutive_gateway_failure": 3,
            "consecutive_5xx": 5,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 50,
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        },
        "load_assignment": {"cluster_name": CLUSTER, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
            for host, port in settings.upstreams
        ]}]},
        "health_checks": [{
            "timeout": _duration(settings.health_check_timeout_s),
            "interval": _duration(settings.health_check_interval_s),
            # Default no_traffic_interval is 60 s: an idle cluster would notice
            # a recovered replica only a minute later. Before any traffic (a replica
            # still loading), it is what applies to unhealthy hosts too.
            "no_traffic_interval": _duration(settings.unhealthy_check_interval_s),
            "no_traffic_healthy_interval": _duration(settings.health_check_interval_s),
            "unhealthy_interval": _duration(settings.unhealthy_check_interval_s),
            "unhealthy_edge_interval": _duration(settings.unhealthy_check_interval_s),
            "unhealthy_threshold": settings.unhealthy_threshold,
            "healthy_threshold": settings.healthy_threshold,
            "grpc_health_check": {"service_name": settings.health_check_service},
        }],
    }


def _tls(settings: EnvoySettings) -> dict:
    """TLS on the listener when a certificate is configured (ALPN: h2 for gRPC, http/1.1 for REST)."""
    if not settings.tls_cert_path:
        return {}
    if not settings.tls_key_path:
        raise ValueError("EnvoySettings.tls_cert_path needs tls_key_path")
    return {"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "tls_certificates": [{"certificate_chain": {"filename": settings.tls_cert_path},
                                  "private_key": {"filename": settings.tls_key_path}}],
        },
    }}}


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def lua_source() -> str:
    """The Lua error filter's source (:mod:`.lua`), rendered from the error table."""
    return render_lua(
        http_mapping_by_grpc_code(), http_code_table(),
        {s: _phrase(s) for s in http_code_table()},
        server_fallback=(ErrorKind.SERVER_ERROR.http_status, ErrorKind.SERVER_ERROR.provider_code),
        client_fallback_code=ErrorKind.INVALID_REQUEST.provider_code,
        grpc_types=dialect_types_by_grpc_code(), http_types=dialect_types_by_http(),
        dialect_paths=DIALECT_PATHS, models_path=MODELS_PATH,
    )


def config_dict(settings: EnvoySettings, descriptor: bytes | None = None) -> dict:
    """The bootstrap as a dict. ``descriptor`` defaults to the file's bytes."""
    if not settings.upstreams:
        raise ValueError("EnvoySettings.upstreams must list at least one gRPC server")
    if not settings.services:
        raise ValueError("EnvoySettings.services must name at least one service to transcode")
    if descriptor is None:
        if not settings.descriptor_path:
            raise ValueError("no descriptor: set EnvoySettings.descriptor_path or pass the bytes")
        with open(settings.descriptor_path, "rb") as f:
            descriptor = f.read()
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor)
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                 "HttpConnectionManager",
        "stat_prefix": "gliner",
        "codec_type": "AUTO",
        "normalize_path": True,
        "route_config": {"name": "gliner", "max_direct_response_body_size_bytes": 4 << 20, "virtual_hosts": [
            {"name": "gliner", "domains": ["*"], "routes": _routes(settings, fds)},
        ]},
        "http_filters": _http_filters(settings, "" if settings.lua_path else lua_source(), descriptor),
        "local_reply_config": _local_reply_config(),
    }
    if settings.access_log:
        hcm["access_log"] = _access_log(settings.access_log, settings.access_log_json)
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": settings.admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "gliner",
                "address": {"socket_address": {"address": settings.listen_host, "port_value": settings.listen_port}},
                # Default SO_REUSEPORT would let a second Envoy (a stale one,
                # or another test's) silently share the port.
                "enable_reuse_port": False,
                "filter_chains": [{
                    "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}],
                    **_tls(settings),
                }],
            }],
            "clusters": [_cluster(settings)],
        },
    }


def render_config(settings: EnvoySettings, descriptor: bytes | None = None) -> str:
    """Envoy bootstrap as JSON text (JSON is valid YAML; Envoy reads either)."""
    return json.dumps(config_dict(settings, descriptor), indent=2) + "\n"
