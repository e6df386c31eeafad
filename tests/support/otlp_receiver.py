"""A real OTLP/HTTP trace receiver for tests (stdlib ``http.server`` in a thread, 127.0.0.1).

It accepts ``POST /v1/traces`` with a protobuf ``ExportTraceServiceRequest`` body (``Content-Type:
application/x-protobuf``; ``Content-Encoding: gzip`` or none), as the OpenTelemetry OTLP/HTTP exporter sends it
(OTLP specification, "OTLP/HTTP"), and answers 200 with an empty ``ExportTraceServiceResponse``. Anything else
gets 404 (another path), 415 (a JSON body: not supported here) or 400 (a body that does not decode).

Every received span is kept as a plain dict::

    {"traceId": "<32 hex>", "spanId": "<16 hex>", "parentSpanId": "<16 hex>" or "",
     "name": str, "kind": "INTERNAL"|"SERVER"|"CLIENT"|"PRODUCER"|"CONSUMER"|"UNSPECIFIED",
     "startTimeUnixNano": int, "endTimeUnixNano": int,          # nanoseconds since the epoch
     "attributes": {key: str | bool | int | float | list},
     "links": [{"traceId", "spanId", "attributes"}],
     "status": {"code": "UNSET"|"OK"|"ERROR", "message": str},
     "service": <resource attribute service.name or None>, "scope": <instrumentation scope name>}

Usage::

    receiver = OtlpReceiver().start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}   # "http://127.0.0.1:<port>"
    ...
    receiver.wait_for(lambda spans: any(s["name"] == "x" for s in spans), timeout=10)
    receiver.stop()
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OtlpReceiver", "decode_export_request"]

_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def _attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    item: KeyValue
    for item in items:
        out[item.key] = _value(item.value)
    return out


def decode_export_request(body: bytes) -> list[dict[str, Any]]:
    """The spans of one protobuf ``ExportTraceServiceRequest`` body (already decompressed) as plain dicts (shape
    in the module docstring). Raises ``google.protobuf.message.DecodeError`` for a body that is not one."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append({
                    "traceId": span.trace_id.hex(),
                    "spanId": span.span_id.hex(),
                    "parentSpanId": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": _KINDS.get(span.kind, str(span.kind)),
                    "startTimeUnixNano": int(span.start_time_unix_nano),
                    "endTimeUnixNano": int(span.end_time_unix_nano),
                    "attributes": _attributes(span.attributes),
                    "links": [{"traceId": link.trace_id.hex(), "spanId": link.span_id.hex(),
                               "attributes": _attributes(link.attributes)} for link in span.links],
                    "status": {"code": _STATUS.get(span.status.code, str(span.status.code)),
                               "message": span.status.message},
                    "service": service,
                    "scope": scope_spans.scope.name,
                })
    return spans


class OtlpReceiver:
    """An OTLP/HTTP trace receiver on ``127.0.0.1:<port>`` (``port`` 0: a free one).

    :meth:`start` / :meth:`stop` run and end the server thread; :attr:`url` is the base URL to give an exporter as
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter appends ``/v1/traces``); :meth:`spans` is a copy of every span
    received so far, in arrival order; :attr:`requests` counts accepted export requests.
    """

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._spans: list[dict[str, Any]] = []
        self.requests = 0
        self.errors: list[str] = []
        """Why requests were refused (status and reason), for test failure messages."""
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (valid after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OtlpReceiver:
        """Listen and serve in a daemon thread. Returns self."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path.split("?", 1)[0] != "/v1/traces":
                    receiver._refused(f"404 {self.path}")
                    self._answer(404, b"not found", "text/plain")
                    return
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    receiver._refused("415 JSON body")
                    self._answer(415, b"protobuf only", "text/plain")
                    return
                encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
                try:
                    if encoding == "gzip":
                        raw = gzip.decompress(raw)
                    elif encoding == "deflate":
                        raw = zlib.decompress(raw)
                    spans = decode_export_request(raw)
                except Exception as exc:  # a bad body is the sender's problem: 400, keep serving
                    receiver._refused(f"400 {type(exc).__name__}")
                    self._answer(400, b"bad request", "text/plain")
                    return
                receiver._add(spans)
                self._answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _add(self, spans: list[dict[str, Any]]) -> None:
        with self._changed:
            self._spans.extend(spans)
            self.requests += 1
            self._changed.notify_all()

    def _refused(self, reason: str) -> None:
        with self._lock:
            self.errors.append(reason)

    def spans(self) -> list[dict[str, Any]]:
        """A copy of every span received so far (arrival order)."""
        with self._lock:
            return list(self._spans)

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate(spans())`` is truthy and return its value; ``AssertionError`` (with the span
        names seen) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate(list(self._spans))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [s["name"] for s in self._spans]
                    raise AssertionError(f"OTLP receiver: condition not met after {timeout}s; spans: {names}; "
                                         f"refused: {self.errors}")
                self._changed.wait(timeout=min(left, 0.5))

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
