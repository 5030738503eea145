"""The run's span: the component's method continues the execution's trace, if the image has OpenTelemetry.

The operator gives each run its trace context in `TRACEPARENT` (W3C
traceparent: the run's span, child of the execution's; schedexec/tracing.py).
The runner itself depends on nothing: `component_span` is a no-op when
`TRACEPARENT` is unset or `opentelemetry` (its API) cannot be imported from
the component's image. When it can, the method runs inside a span named by
the method, child of the run's, so the component's own spans (made with
the OpenTelemetry API) hang under it.

Who exports: if the OTEL_* environment names an exporter (set it in the
execution's pod template, say `OTEL_EXPORTER_OTLP_ENDPOINT`) and the SDK
and its OTLP/HTTP exporter are installed, the runner sets up a
TracerProvider itself and flushes it before the run's process ends (a run
is a short process: nothing would be exported in the background). Else
the span goes to whatever provider the component set up itself, if any.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from schedexec_runner import contract

ENV = "TRACEPARENT"


def _exporting(environ: Mapping[str, str]) -> Any:
    """A TracerProvider exporting to what OTEL_* names, if it names something and the SDK is there."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if exporter_name == "none" or not (exporter_name or endpoint):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        if exporter_name == "console":
            exporter: Any = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
    except ImportError:
        return None
    name = environ.get("OTEL_SERVICE_NAME") or "schedexec-run"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


@contextlib.contextmanager
def component_span(method: str, environ: Mapping[str, str] = os.environ, provider: Any = None) -> Iterator[None]:
    """The component's method runs inside this: a span child of TRACEPARENT's, when OpenTelemetry is there.
    `provider`: the TracerProvider to use (tests); default: one OTEL_* configures, else the global one."""
    parent = environ.get(ENV, "")
    if not parent:
        yield
        return
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:  # a component image without OpenTelemetry: nothing to continue the trace with
        yield
        return
    own = None if provider is not None else _exporting(environ)
    chosen = provider or own or trace.get_tracer_provider()
    context = TraceContextTextMapPropagator().extract({"traceparent": parent})
    attributes = {"schedexec.method": method, "schedexec.execution": environ.get(contract.EXECUTION, "")}
    try:
        with chosen.get_tracer("schedexec_runner").start_as_current_span(
            method, context=context, kind=trace.SpanKind.INTERNAL, attributes=attributes
        ):
            yield
    finally:
        if own is not None:
            own.shutdown()  # exports what is buffered before the process ends
