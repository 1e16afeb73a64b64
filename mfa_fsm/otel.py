"""OpenTelemetry traces and metrics of every flow step: the ``otel`` extra.

Install ``mfa_fsm[otel]`` (``opentelemetry-api``; the application brings the SDK and its
exporters), set the application's ``TracerProvider`` and ``MeterProvider`` as usual, then
once at start-up::

    from mfa_fsm import otel
    otel.instrument()

Tracing is switched on only by this call. mfa_fsm itself never imports OpenTelemetry: until
:func:`instrument` runs, a step pays one attribute look-up (``mfa_fsm.core.exchange.tracing``)
and nothing else, so an application without the extra, or one that does not call it, loads
and runs exactly as before. (Switching on by itself whenever ``opentelemetry`` is importable
would need that import, or a search of ``sys.path``, on every cold start.)

Spans
-----
One span per flow step, ``Flow.start`` and every ``Flow.send``, sync or async, named
``mfa_fsm <event>`` (``mfa_fsm start``, ``mfa_fsm submit_response``, ``mfa_fsm poll``), with:

======================================  ================================================
``mfa_fsm.provider``                    ``entrust``, ``cyberark``, ``duo``
``mfa_fsm.event``                       the event sent (``start`` for the opening)
``mfa_fsm.event_taken``                 the event the machine took, when not the one sent
                                        (``expire`` past the deadline, or when the IdP
                                        says the login is gone)
``mfa_fsm.source_state``                the state before the step (not on ``start``)
``mfa_fsm.target_state``                the state after it (the same when nothing was due)
``mfa_fsm.outcome``                     the handler's outcome (``completed``, ``rejected``,
                                        ...; absent when nothing was due yet)
``mfa_fsm.failure``                     the failure reason, when the step ended ``Failed``
``mfa_fsm.version``                     the snapshot's version after the step
``mfa_fsm.flow_ref``                    :func:`~mfa_fsm.core.logref.flow_ref` of the flow,
                                        as in the log lines (never the flow id: a bearer
                                        handle)
``mfa_fsm.idp.call``                    the step's last IdP request, ``METHOD template``
                                        (``POST /Security/AdvanceAuthentication``)
``mfa_fsm.idp.status_code``             its HTTP status
``mfa_fsm.idp.calls``                   how many IdP requests the step sent
``error.type``                          the exception's class when the step raised (the
                                        span's status is then ``ERROR``; no message)
======================================  ================================================

An event refused before its step begins (an unknown event name, any event once the flow has
ended, a call ``start`` would refuse) writes no span; every other refusal or failure is a
step span with an error.

Each IdP request is a child span of its step (kind ``CLIENT``), named ``METHOD template``
with the OpenTelemetry HTTP semantic conventions' attributes: ``http.request.method``,
``url.template``, ``server.address``, ``server.port``, ``http.response.status_code`` and, on
a transport failure or a 4xx/5xx reply, ``error.type``. The template is the one the
provider's handlers declare (``@on(..., calls="POST /path/{name}")``) when the request's path
fits it, else the request's path, the same value the step's log line carries as
``idp_path``; the URL's query and the bodies are never recorded. Nothing that reaches a span
is a secret: no answer, code, token, cookie, session id, user name or flow id, and no error
message, only an error's class.

A ``send``'s span is opened as the step begins and is the current span while it runs, so a
span or log line another instrumentation makes meanwhile belongs to the step (the
``mfa_fsm.transition`` log line included). The IdP requests are timed as they are sent and
written as child spans when the step ends (a span ``requests``' or ``httpx``' own
instrumentation opens is their sibling, under the step). ``start`` learns the flow's id only
at its end, so its span is written then, with the step's own start time, in the flow's trace.

One login, one trace
--------------------
A login's steps arrive in separate requests, often in separate processes. Each flow has a
trace id of its own, derived from its id by HMAC-SHA256 under the log key
(:func:`~mfa_fsm.core.logref.flow_digest`), and a root span id derived the same way: the
*flow root*. Every step's span links to the flow root (a span Link), and a step run without
an enclosing span (a script, the CLI, a worker) is the flow root's child, so all of its steps
share the flow's trace. A step inside a request the web framework's instrumentation already
traces stays a child of that request's span, and the link joins it to the login.

The trace id is derived rather than stored in the snapshot so that nothing changes in what
the stores keep (the snapshot format, sealed client-side state's size) and every store works
alike. As for ``flow_ref`` in log lines, the processes of one application agree on a flow's
trace id only when they share the log key (``MFA_FSM_LOG_KEY``, or
:func:`~mfa_fsm.set_log_key`); without it each process draws its own. The flow root itself
is never exported (no process holds it to end), so a trace viewer shows the steps under a
missing root. It is marked sampled, so a parent-based sampler keeps every step of a login
whole (a ratio sampler at the root does not thin logins: sample mfa_fsm's steps, scope
``mfa_fsm``, with a sampler of your own if they are too many).

Metrics
-------
``mfa_fsm.flows.started``
    Counter of flows started (attribute ``mfa_fsm.provider``).
``mfa_fsm.flows.completed``
    Counter of flows that reached ``Completed``.
``mfa_fsm.flows.failed``
    Counter of flows that reached ``Failed``, by ``mfa_fsm.failure`` (``denied``,
    ``rejected``, ``expired``, ``locked``, ``cancelled``, ``idp_error``, ``unavailable``).
``mfa_fsm.approval.polls``
    Histogram of the polls an out-of-band challenge (a push, a phone call) took until the
    IdP answered it, recorded by the poll that ends the wait, with its ``mfa_fsm.outcome``
    (``completed`` or the next factor: approved; ``failed``: refused). It reads the count
    the provider keeps in its snapshot context (``polls``, the pending answers so far), so
    it is exact whichever processes served the polls.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from mfa_fsm.core import exchange
from mfa_fsm.core.errors import UsageError
from mfa_fsm.core.http import HttpRequest
from mfa_fsm.core.logref import LazyLogger, flow_digest, flow_ref

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.util.types import AttributeValue
except ImportError as missing:  # pragma: no cover - the extra is installed in the suite
    raise UsageError(
        "mfa_fsm.otel needs OpenTelemetry's API: pip install 'mfa_fsm[otel]' (and an "
        "OpenTelemetry SDK to export what it records)"
    ) from missing

__all__ = ["FlowTracing", "flow_root", "instrument", "uninstrument"]

#: The instrumentation scope every span and instrument is made under.
SCOPE = "mfa_fsm"
#: The ``purpose`` of :func:`~mfa_fsm.core.logref.flow_digest` for the flow root.
_ROOT_PURPOSE = "opentelemetry flow root"
#: Bucket boundaries suggested for the polls histogram (a push answered in a minute or two
#: at the usual 2-5 second interval takes a few to a few dozen polls).
POLL_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)

_FINAL = frozenset({"Completed", "Failed"})
_OOB_PENDING = "OobPending"

log = LazyLogger("mfa_fsm")


@attrs.frozen
class _Call:
    """One IdP request of a step: what its span says (never the URL's query, a header or a
    body: the request itself is not kept), and when it ran (epoch nanoseconds)."""

    method: str
    path: str
    host: str | None
    port: int | None
    status: int | None
    error: str | None
    start_ns: int
    end_ns: int


@attrs.define
class _Step:
    """One step being run: the flow (or, for ``start``, its class), the event, the snapshot
    before it (``None`` for ``start``), its start (epoch ns and perf counter), its requests
    and its result."""

    flow: Any
    event: str
    before: Any
    start_ns: int
    start_perf: float
    calls: list[_Call] = attrs.field(factory=list)
    result: Any = None
    #: the step's span, when it was opened as the step began (a ``send``)
    span: trace.Span | None = None
    #: whether opening the span failed (then nothing more is written for the step)
    broken: bool = False

    def passed(self, result: Any) -> Any:
        """Keep ``result`` (the opening's flow, or ``(event taken, outcome)``) and return it."""
        self.result = result
        return result

    def epoch_ns(self, perf: float) -> int:
        """The epoch nanoseconds of the ``perf_counter`` reading ``perf`` during this step."""
        return self.start_ns + round((perf - self.start_perf) * 1e9)


#: The step the current thread or task is running (for the requests its driver sends).
_CURRENT: contextvars.ContextVar[_Step | None] = contextvars.ContextVar(
    "mfa_fsm_otel_step", default=None
)


def flow_root(flow_id: str) -> trace.SpanContext:
    """The flow root of ``flow_id``: the span context every step of the flow links to, its
    trace id and span id derived from the id under the log key (see "One login, one trace").
    The same id and key always give the same context."""
    digest = flow_digest(flow_id, _ROOT_PURPOSE)
    return trace.SpanContext(
        trace_id=int.from_bytes(digest[:16], "big") or 1,
        span_id=int.from_bytes(digest[16:24], "big") or 1,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )


class FlowTracing:
    """Writes the spans and metrics of every flow step; :func:`instrument` installs one.

    ``tracer_provider`` and ``meter_provider`` default to OpenTelemetry's global ones (read
    when this is built; the API's global proxies follow a provider set later).
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
        self.started = meter.create_counter(
            "mfa_fsm.flows.started", unit="{flow}", description="Flows started."
        )
        self.completed = meter.create_counter(
            "mfa_fsm.flows.completed", unit="{flow}", description="Flows that reached Completed."
        )
        self.failed = meter.create_counter(
            "mfa_fsm.flows.failed",
            unit="{flow}",
            description="Flows that reached Failed, by reason (mfa_fsm.failure).",
        )
        self.polls = meter.create_histogram(
            "mfa_fsm.approval.polls",
            unit="{poll}",
            description="Polls of an out-of-band challenge until the IdP answered it.",
            explicit_bucket_boundaries_advisory=POLL_BUCKETS,
        )
        #: flow class -> its handlers' declared requests: (method, path pattern, template)
        self._templates: dict[type, tuple[tuple[str, re.Pattern[str], str], ...]] = {}

    # -- the hooks (mfa_fsm.core.exchange.Tracing) ----------------------------------------

    @contextlib.contextmanager
    def step(self, flow: Any, event: str, before: Any) -> Iterator[Callable[[Any], Any]]:
        """Around one step: note its requests, then write its spans and metrics.

        A ``send`` knows its flow from the start, so its span is opened at once and is the
        current span while the step runs (a span or a log line made meanwhile, by another
        instrumentation, belongs to the step); ``start`` learns its flow id only at its end,
        so its span is written then, with the step's start time, in the flow's trace.
        """
        step = _Step(flow, event, before, time.time_ns(), time.perf_counter())
        token = _CURRENT.set(step)
        attached: Any = None  # attach's token (its type differs between API versions)
        if before is not None:
            try:
                step.span = self._open(step, before)
                attached = otel_context.attach(trace.set_span_in_context(step.span))
            except Exception as exc:  # telemetry never breaks a login
                step.broken = True
                log.warning("mfa_fsm.otel_failed", error=type(exc).__name__)
        error: BaseException | None = None
        try:
            yield step.passed
        except BaseException as exc:
            error = exc
            raise
        finally:
            _CURRENT.reset(token)
            end_ns = time.time_ns()
            if attached is not None:
                otel_context.detach(attached)
            if not step.broken:
                try:
                    self._write(step, error, end_ns)
                except Exception as exc:  # telemetry never breaks a login
                    log.warning("mfa_fsm.otel_failed", error=type(exc).__name__)

    def call(
        self, request: HttpRequest, status: int | None, error: BaseException | None, started: float
    ) -> None:
        """Note one request the running step's driver sent (ignored outside a step)."""
        step = _CURRENT.get()
        if step is None:
            return
        url = urllib.parse.urlsplit(request.url)
        step.calls.append(
            _Call(
                request.method.upper(),
                request.path,
                url.hostname,
                url.port or {"https": 443, "http": 80}.get(url.scheme),
                status,
                None if error is None else _error_type(error),
                step.epoch_ns(started),
                step.epoch_ns(time.perf_counter()),
            )
        )

    # -- writing ------------------------------------------------------------------------

    def _open(self, step: _Step, known: Any) -> trace.Span:
        """The step's span, begun at its start: in the current span if one is open (the
        request's), else in the flow's trace under its flow root; linked to the flow root.
        ``known`` is a snapshot of the flow (``None``: the flow is unknown, a failed
        ``start``, so the span is only in the current context)."""
        parent: Any = None  # the current context: the request's span, if one is open
        links: list[trace.Link] = []
        attributes: dict[str, AttributeValue] = {}
        if known is not None:
            attributes["mfa_fsm.flow_ref"] = flow_ref(known.flow_id)
            root = flow_root(known.flow_id)
            links.append(trace.Link(root))
            if not trace.get_current_span().get_span_context().is_valid:
                parent = trace.set_span_in_context(trace.NonRecordingSpan(root))
        return self.tracer.start_span(
            f"mfa_fsm {step.event}",
            context=parent,
            kind=trace.SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
            start_time=step.start_ns,
        )

    def _write(self, step: _Step, error: BaseException | None, end_ns: int) -> None:
        flow, before = step.flow, step.before
        opened = flow if before is not None else (step.result if error is None else None)
        after = opened.snapshot() if opened is not None else None
        flow_class: Any = flow if isinstance(flow, type) else type(flow)
        attributes, outcome = self._step_attributes(step, flow_class, after, error)
        span = step.span if step.span is not None else self._open(step, after)
        span.set_attributes(attributes)
        inside = trace.set_span_in_context(span)
        for call in step.calls:
            self._write_call(flow_class, call, inside)
        if error is not None:
            span.set_status(trace.StatusCode.ERROR, type(error).__name__)
        span.end(end_time=end_ns)

        if error is None and after is not None:
            self._count(flow_class.provider, step, after, outcome)

    def _step_attributes(
        self, step: _Step, flow_class: Any, after: Any, error: BaseException | None
    ) -> tuple[dict[str, AttributeValue], str | None]:
        """The step span's attributes (see the module's table) and the outcome's kind."""
        before = step.before
        attributes: dict[str, AttributeValue] = {
            "mfa_fsm.provider": flow_class.provider,
            "mfa_fsm.event": step.event,
        }
        outcome: str | None = None
        if before is not None:
            attributes["mfa_fsm.source_state"] = before.state
        if error is None and after is not None:
            if before is not None:
                taken, result = step.result
                if taken != step.event:
                    attributes["mfa_fsm.event_taken"] = taken
                if result is not None:
                    outcome = str(result.kind)
                    attributes["mfa_fsm.outcome"] = outcome
            attributes["mfa_fsm.target_state"] = after.state
            attributes["mfa_fsm.version"] = after.version
            if after.failure is not None and after.state == "Failed":
                attributes["mfa_fsm.failure"] = after.failure
        if step.calls:
            last = step.calls[-1]
            method, template = self._template(flow_class, last.method, last.path)
            attributes["mfa_fsm.idp.call"] = f"{method} {template}"
            if last.status is not None:
                attributes["mfa_fsm.idp.status_code"] = last.status
        attributes["mfa_fsm.idp.calls"] = len(step.calls)
        if error is not None:
            attributes["error.type"] = _error_type(error)
        return attributes, outcome

    def _write_call(self, flow_class: type, call: _Call, inside: Any) -> None:
        method, template = self._template(flow_class, call.method, call.path)
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.template": template,
        }
        if call.host:
            attributes["server.address"] = call.host
            if call.port is not None:
                attributes["server.port"] = call.port
        error = call.error
        if call.status is not None:
            attributes["http.response.status_code"] = call.status
            if call.status >= 400:
                error = str(call.status)  # the HTTP conventions' error.type of a client span
        if error is not None:
            attributes["error.type"] = error
        span = self.tracer.start_span(
            f"{method} {template}",
            context=inside,
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=call.start_ns,
        )
        if error is not None:
            span.set_status(trace.StatusCode.ERROR)
        span.end(end_time=call.end_ns)

    def _count(self, provider: str, step: _Step, after: Any, outcome: str | None) -> None:
        before = step.before
        labels: dict[str, AttributeValue] = {"mfa_fsm.provider": provider}
        if before is None:
            self.started.add(1, labels)
        if after.state in _FINAL and (before is None or before.state not in _FINAL):
            if after.state == "Completed":
                self.completed.add(1, labels)
            else:
                self.failed.add(1, {**labels, "mfa_fsm.failure": after.failure or "unknown"})
        if (
            before is not None
            and outcome is not None
            and step.result[0] == "poll"
            and before.state == _OOB_PENDING
            and after.state != _OOB_PENDING
        ):
            polls = getattr(before.context, "polls", None)
            if type(polls) is int:
                # The context counts the polls answered "pending"; this one ended the wait.
                self.polls.record(polls + 1, {**labels, "mfa_fsm.outcome": outcome})

    def _template(self, flow_class: type, method: str, path: str) -> tuple[str, str]:
        """``(method, template)`` of a request: the declared template its path fits, or its
        path (which the log lines carry as ``idp_path``; a request's path has no query)."""
        templates = self._templates.get(flow_class)
        if templates is None:
            templates = self._templates[flow_class] = _declared_templates(flow_class)
        for declared_method, pattern, template in templates:
            if declared_method == method and pattern.fullmatch(path):
                return method, template
        return method, path


def _declared_templates(flow_class: type) -> tuple[tuple[str, re.Pattern[str], str], ...]:
    """The requests ``flow_class``'s handlers declare (``calls="POST /path/{name} (Note)"``)
    as (method, pattern of the paths it stands for, template)."""
    found: dict[tuple[str, str], re.Pattern[str]] = {}
    handlers: Mapping[str, Any] = getattr(flow_class, "handlers", {})
    for handler in handlers.values():
        for declared in handler.calls:
            method, _, rest = declared.partition(" ")
            template = rest.split(" ", 1)[0]  # past the path: a note such as "(Poll)"
            if not template.startswith("/"):
                continue
            parts = re.split(r"(\{[^{}/]+\})", template)
            pattern = "".join(
                "[^/]+" if part.startswith("{") else re.escape(part) for part in parts
            )
            found[method.upper(), template] = re.compile(pattern)
    return tuple((method, pattern, template) for (method, template), pattern in found.items())


def _error_type(error: BaseException) -> str:
    """An exception's fully qualified class name (the conventions' ``error.type``)."""
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> FlowTracing:
    """Write a span per flow step and count flows from now on, in this process; returns the
    installed :class:`FlowTracing`. ``tracer_provider`` / ``meter_provider`` default to
    OpenTelemetry's global providers. Calling it again replaces the previous one."""
    tracing = FlowTracing(tracer_provider, meter_provider)
    exchange.tracing = tracing
    return tracing


def uninstrument() -> None:
    """Stop writing spans and metrics: steps run as if :func:`instrument` never ran."""
    exchange.tracing = None
