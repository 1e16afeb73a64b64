"""The ``otel`` extra: spans and metrics of real logins over HTTP to the emulators, read back
through the OpenTelemetry SDK's in-memory span exporter and metric reader.

The login tests run twice (the ``driver`` fixture): over the sync driver (requests) and the
async one (httpx); every step restores the flow from JSON, as a stateless web handler does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mfa_fsm import (
    AsyncEngine,
    AsyncMemoryStore,
    CyberArkFlow,
    Engine,
    EntrustConfig,
    EntrustFlow,
    EventNotAllowed,
    HttpxTransport,
    IdpError,
    MemoryStore,
    TransportError,
    flow_ref,
    otel,
    set_log_key,
)
from mfa_fsm.core.identity import VerifiedUser
from mfa_fsm.duo import DuoConfig, DuoCredentials, DuoFlow
from mfa_fsm.testing import CyberArkEmulator
from mfa_fsm.testing.duo import DuoEmulator
from mfa_fsm.testing.entrust import EntrustEmulator
from mfa_fsm.testing.leaks import SecretRecorder, find_leaks
from tests.support.cyberark import Clock, pick
from tests.support.cyberark import config_for as cyberark_config
from tests.support.stateless import SYNC, Driver, StatelessClient

ENTRUST_QUERY = "/api/web/v2/authentication/users"
ENTRUST_SELECT = "/api/web/v2/authentication/users/authenticate/{authenticator}"
ENTRUST_COMPLETE = "/api/web/v1/authentication/users/authenticate/{authenticator}/complete"
CYBERARK_START = "/Security/StartAuthentication"
CYBERARK_ADVANCE = "/Security/AdvanceAuthentication"


class Telemetry:
    """An SDK tracer and meter provider writing to memory, with readers for the tests."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def steps(self) -> list[ReadableSpan]:
        """The step spans, in the order the steps started."""
        found = [
            span
            for span in self.spans()
            if span.instrumentation_scope is not None
            and span.instrumentation_scope.name == otel.SCOPE
            and span.kind is trace.SpanKind.INTERNAL
        ]
        return sorted(found, key=lambda span: span.start_time or 0)

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return [
            span
            for span in self.spans()
            if span.parent is not None and span.parent.span_id == parent.context.span_id
        ]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Metric name -> its points: (attributes, value) for counters, (attributes,
        (count, sum)) for histograms."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = found.setdefault(metric.name, [])
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = (point.count, point.sum)  # type: ignore[union-attr]
                        points.append((dict(point.attributes or {}), value))
        return found

    def texts(self) -> list[str]:
        """Everything the exporters would ship, as text (for the leak checks)."""
        texts = [span.to_json() for span in self.spans()]
        data = self.reader.get_metrics_data()
        if data is not None:
            texts.append(data.to_json())
        return texts


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """mfa_fsm instrumented for the test, into memory; uninstrumented afterwards."""
    recorded = Telemetry()
    otel.instrument(
        tracer_provider=recorded.tracer_provider, meter_provider=recorded.meter_provider
    )
    try:
        yield recorded
    finally:
        otel.uninstrument()
        recorded.tracer_provider.shutdown()
        recorded.meter_provider.shutdown()


def entrust_config(emulator: EntrustEmulator) -> EntrustConfig:
    return EntrustConfig(
        base_url=emulator.base_url,
        application_id=emulator.application_id,
        poll_interval=0.0,
    )


def entrust_login(
    emulator: EntrustEmulator, recorder: SecretRecorder, driver: Driver = SYNC
) -> StatelessClient:
    config = entrust_config(emulator)
    flow = driver.start(
        EntrustFlow, config=config, verified_user=VerifiedUser("jsmith"), transport=recorder
    )
    return StatelessClient(flow, driver=driver, config=config, transport=recorder)


def assert_no_leak(
    telemetry: Telemetry, recorder: SecretRecorder, flow_id: str, *typed: str
) -> None:
    """No secret the flow carried or the user typed, no flow id and no user name reaches
    a span or a metric."""
    texts = telemetry.texts()
    recorder.add(*typed)
    assert recorder.secrets, "the flow carried no secret to look for"
    assert find_leaks(texts, recorder.secrets) == []
    corpus = "\n".join(texts)
    assert flow_id not in corpus
    for user in ("jsmith", "alice"):
        assert user not in corpus


def test_entrust_otp_login_is_one_trace(
    telemetry: Telemetry, entrust_emulator: EntrustEmulator, recorder: SecretRecorder, driver
) -> None:
    """An Entrust EXTERNAL + OTP login: one span per step with its states, outcome and IdP
    call, each request a CLIENT child span with the HTTP conventions' attributes, and every
    span in the flow's own trace, the steps children of (and linked to) the flow root."""
    client = entrust_login(entrust_emulator, recorder, driver)
    flow_id = client.view.flow_id
    client.send("submit_first_factor")
    client.send("select_second_factor", factor="OTP", delivery="SMS")
    otp = entrust_emulator.last_otp("jsmith")
    assert otp is not None
    assert client.send("submit_response", answer=otp).state == "Completed"

    steps = telemetry.steps()
    assert [span.name for span in steps] == [
        "mfa_fsm start",
        "mfa_fsm submit_first_factor",
        "mfa_fsm select_second_factor",
        "mfa_fsm submit_response",
    ]
    expected = [
        (None, "AwaitingFirstFactor", None, f"POST {ENTRUST_QUERY}"),
        ("AwaitingFirstFactor", "AwaitingSecondFactor", "second_factor_due", ENTRUST_COMPLETE),
        ("AwaitingSecondFactor", "SecondFactorSelected", "response_due", ENTRUST_SELECT),
        ("SecondFactorSelected", "Completed", "completed", ENTRUST_COMPLETE),
    ]
    root = otel.flow_root(flow_id)
    for version, (span, (source, target, outcome, path)) in enumerate(
        zip(steps, expected, strict=True)
    ):
        call = path if path.startswith("POST ") else f"POST {path}"
        attributes = dict(span.attributes or {})
        assert attributes.get("mfa_fsm.source_state") == source
        assert attributes["mfa_fsm.target_state"] == target
        assert attributes.get("mfa_fsm.outcome") == outcome
        assert attributes["mfa_fsm.idp.call"] == call
        assert attributes["mfa_fsm.idp.status_code"] == 200
        assert attributes["mfa_fsm.idp.calls"] == 1
        assert attributes["mfa_fsm.version"] == version
        assert attributes["mfa_fsm.provider"] == "entrust"
        assert attributes["mfa_fsm.flow_ref"] == flow_ref(flow_id)
        assert "mfa_fsm.event_taken" not in attributes
        assert span.status.status_code is trace.StatusCode.UNSET
        # One trace: the flow's; the step a child of the flow root and linked to it.
        assert span.context.trace_id == root.trace_id
        assert span.parent is not None and span.parent.span_id == root.span_id
        assert [link.context for link in span.links] == [root]
        # The IdP request: a CLIENT child span inside the step's time.
        (http,) = telemetry.children(span)
        assert http.kind is trace.SpanKind.CLIENT
        assert http.name == call
        assert http.context.trace_id == root.trace_id
        http_attributes = dict(http.attributes or {})
        assert http_attributes["http.request.method"] == "POST"
        assert f"POST {http_attributes['url.template']}" == call
        assert http_attributes["server.address"] == "127.0.0.1"
        assert http_attributes["server.port"] == int(entrust_emulator.base_url.rsplit(":", 1)[1])
        assert http_attributes["http.response.status_code"] == 200
        assert "error.type" not in http_attributes
        assert span.start_time is not None and http.start_time is not None
        assert span.end_time is not None and http.end_time is not None
        assert span.start_time <= http.start_time <= http.end_time <= span.end_time

    metrics = telemetry.metrics()
    assert metrics["mfa_fsm.flows.started"] == [({"mfa_fsm.provider": "entrust"}, 1)]
    assert metrics["mfa_fsm.flows.completed"] == [({"mfa_fsm.provider": "entrust"}, 1)]
    assert "mfa_fsm.flows.failed" not in metrics
    assert_no_leak(telemetry, recorder, flow_id, otp)


def test_cyberark_push_polled_to_approval(
    telemetry: Telemetry, recorder: SecretRecorder, driver
) -> None:
    """A CyberArk password + push login polled until approved: the poll spans say pending,
    then completed; the polls histogram gets one value (the two polls) for the approval."""
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        config = cyberark_config(emulator)
        clock = Clock()
        flow = driver.start(
            CyberArkFlow, config=config, user="alice", transport=recorder, clock=clock
        )
        client = StatelessClient(
            flow, driver=driver, config=config, transport=recorder, clock=clock
        )
        flow_id = client.view.flow_id
        client.send("submit_first_factor", answer="alice-password")
        client.send("select_second_factor", factor=pick(client.view, "Mobile Authenticator"))
        assert client.send("poll").state == "OobPending"
        emulator.approve("alice")
        assert client.send("poll").state == "Completed"

    steps = telemetry.steps()
    assert [span.name.removeprefix("mfa_fsm ") for span in steps] == [
        "start",
        "submit_first_factor",
        "select_second_factor",
        "poll",
        "poll",
    ]
    polls = [dict(span.attributes or {}) for span in steps[3:]]
    assert [(p["mfa_fsm.outcome"], p["mfa_fsm.target_state"]) for p in polls] == [
        ("oob_pending", "OobPending"),
        ("completed", "Completed"),
    ]
    for span in steps:
        attributes = dict(span.attributes or {})
        assert attributes["mfa_fsm.provider"] == "cyberark"
        (http,) = telemetry.children(span)
        template = CYBERARK_START if span is steps[0] else CYBERARK_ADVANCE
        assert http.name == f"POST {template}"
        assert attributes["mfa_fsm.idp.call"] == f"POST {template}"
        assert dict(http.attributes or {})["url.template"] == template
        assert span.context.trace_id == otel.flow_root(flow_id).trace_id

    metrics = telemetry.metrics()
    provider = {"mfa_fsm.provider": "cyberark"}
    assert metrics["mfa_fsm.flows.started"] == [(provider, 1)]
    assert metrics["mfa_fsm.flows.completed"] == [(provider, 1)]
    assert metrics["mfa_fsm.approval.polls"] == [
        ({**provider, "mfa_fsm.outcome": "completed"}, (1, 2))
    ]
    assert_no_leak(telemetry, recorder, flow_id, "alice-password")


def test_engine_logins_are_traced(
    telemetry: Telemetry, entrust_emulator: EntrustEmulator, recorder: SecretRecorder
) -> None:
    """Through Engine (memory store) and AsyncEngine (async memory store, httpx) each login is
    one trace of its own: the engines' steps are the flows' steps."""
    config = entrust_config(entrust_emulator)
    user = VerifiedUser("jsmith", checked_by="the test")

    engine = Engine(MemoryStore(), [config], transport=recorder)
    view = engine.start("entrust", verified_user=user)
    engine.send(view.flow_id, "submit_first_factor")
    engine.send(view.flow_id, "select_second_factor", factor="OTP")
    otp = entrust_emulator.last_otp("jsmith")
    assert otp is not None
    assert engine.send(view.flow_id, "submit_response", answer=otp).state == "Completed"

    async def async_login() -> str:
        async with HttpxTransport() as transport:
            engine = AsyncEngine(AsyncMemoryStore(), [config], transport=transport)
            view = await engine.start("entrust", verified_user=user)
            await engine.send(view.flow_id, "submit_first_factor")
            await engine.send(view.flow_id, "cancel")
            return view.flow_id

    async_flow = asyncio.run(async_login())

    by_trace: dict[int, list[str]] = {}
    for span in telemetry.steps():
        by_trace.setdefault(span.context.trace_id, []).append(span.name.removeprefix("mfa_fsm "))
    assert by_trace == {
        otel.flow_root(view.flow_id).trace_id: [
            "start",
            "submit_first_factor",
            "select_second_factor",
            "submit_response",
        ],
        otel.flow_root(async_flow).trace_id: ["start", "submit_first_factor", "cancel"],
    }
    metrics = telemetry.metrics()
    assert metrics["mfa_fsm.flows.started"] == [({"mfa_fsm.provider": "entrust"}, 2)]
    assert metrics["mfa_fsm.flows.failed"] == [
        ({"mfa_fsm.provider": "entrust", "mfa_fsm.failure": "cancelled"}, 1)
    ]
    assert_no_leak(telemetry, recorder, view.flow_id, otp)


def test_duo_push_polls_carry_no_query(telemetry: Telemetry, recorder: SecretRecorder) -> None:
    """Duo's status polls are GETs whose query holds the transaction id (a secret): their
    spans carry the declared template, never the query, and the histogram counts them."""
    with DuoEmulator() as emulator:
        creds = emulator.credentials
        config = DuoConfig(
            credentials=DuoCredentials(creds.integration_key, creds.secret_key, creds.api_hostname),
            base_url=emulator.base_url,
            poll_interval=0.0,
        )
        flow = DuoFlow.start(
            config=config,
            verified_user=VerifiedUser("jsmith", checked_by="the test"),
            transport=recorder,
        )
        flow.send("submit_first_factor")
        push = next(choice.id for choice in flow.view().choices if choice.kind == "push")
        flow.send("select_second_factor", factor=push)
        assert flow.send("poll").state == "OobPending"
        emulator.answer("jsmith", "approve")
        assert flow.send("poll").state == "Completed"

    polls = [span for span in telemetry.steps() if span.name == "mfa_fsm poll"]
    assert len(polls) == 2
    for span in polls:
        (http,) = telemetry.children(span)
        assert http.name == "GET /auth/v2/auth_status"
        assert dict(http.attributes or {})["url.template"] == "/auth/v2/auth_status"
    assert "?" not in "\n".join(telemetry.texts())
    assert telemetry.metrics()["mfa_fsm.approval.polls"] == [
        ({"mfa_fsm.provider": "duo", "mfa_fsm.outcome": "completed"}, (1, 2))
    ]
    assert any(len(secret) > 20 for secret in recorder.secrets)  # the txid, among others
    assert_no_leak(telemetry, recorder, flow.flow_id)


def test_push_past_its_deadline_fails_by_reason(
    telemetry: Telemetry, recorder: SecretRecorder
) -> None:
    """A poll past the out-of-band deadline is taken as ``expire`` without an IdP call: the
    span says so, and the failed counter counts the flow under its reason."""
    with CyberArkEmulator(pod_fqdn_as_url=True) as emulator:
        config = cyberark_config(emulator, oob_lifetime=120.0)
        clock = Clock()
        flow = CyberArkFlow.start(config=config, user="alice", transport=recorder, clock=clock)
        flow.send("submit_first_factor", answer="alice-password")
        flow.send("select_second_factor", factor=pick(flow.view(), "Mobile Authenticator"))
        clock.advance(121.0)
        assert flow.send("poll").failure == "expired"

    last = telemetry.steps()[-1]
    attributes = dict(last.attributes or {})
    assert attributes["mfa_fsm.event"] == "poll"
    assert attributes["mfa_fsm.event_taken"] == "expire"
    assert attributes["mfa_fsm.outcome"] == "expired"
    assert attributes["mfa_fsm.failure"] == "expired"
    assert attributes["mfa_fsm.idp.calls"] == 0
    assert "mfa_fsm.idp.call" not in attributes
    assert telemetry.children(last) == []
    metrics = telemetry.metrics()
    assert metrics["mfa_fsm.flows.failed"] == [
        ({"mfa_fsm.provider": "cyberark", "mfa_fsm.failure": "expired"}, 1)
    ]
    assert "mfa_fsm.flows.completed" not in metrics
    assert "mfa_fsm.approval.polls" not in metrics  # no poll answered it
    assert_no_leak(telemetry, recorder, flow.flow_id, "alice-password")


def test_step_inside_a_request_span(
    telemetry: Telemetry, entrust_emulator: EntrustEmulator, recorder: SecretRecorder
) -> None:
    """A step run inside a span the web framework opened stays that span's child, in the
    request's trace, and links to the flow root; the IdP request is the step's child."""
    client = entrust_login(entrust_emulator, recorder)
    tracer = telemetry.tracer_provider.get_tracer("the web framework")
    with tracer.start_as_current_span("POST /login/step") as request_span:
        client.send("submit_first_factor")
    step = telemetry.steps()[-1]
    request_context = request_span.get_span_context()
    assert step.name == "mfa_fsm submit_first_factor"
    assert step.parent is not None and step.parent.span_id == request_context.span_id
    assert step.context.trace_id == request_context.trace_id
    root = otel.flow_root(client.view.flow_id)
    assert root.trace_id != request_context.trace_id
    assert [link.context for link in step.links] == [root]
    (http,) = telemetry.children(step)
    assert http.context.trace_id == request_context.trace_id


def test_refused_and_failed_steps(
    telemetry: Telemetry, entrust_emulator: EntrustEmulator, recorder: SecretRecorder
) -> None:
    """A step that raises ends its span with status ERROR and the error's class (never its
    message); an IdP error reply is an errored CLIENT span with its status code; a dropped
    connection one with the transport error's class. Nothing is counted."""
    flow = EntrustFlow.start(
        config=entrust_config(entrust_emulator),
        verified_user=VerifiedUser("jsmith"),
        transport=recorder,
    )
    with pytest.raises(EventNotAllowed):
        flow.send("poll")
    refused = telemetry.steps()[-1]
    assert refused.status.status_code is trace.StatusCode.ERROR
    attributes = dict(refused.attributes or {})
    assert attributes["error.type"] == "mfa_fsm.core.errors.EventNotAllowed"
    assert attributes["mfa_fsm.source_state"] == "AwaitingFirstFactor"
    assert "mfa_fsm.target_state" not in attributes
    assert telemetry.children(refused) == []

    entrust_emulator.faults.inject("status", status=500, path="/complete")
    with pytest.raises(IdpError):
        flow.send("submit_first_factor")
    failed = telemetry.steps()[-1]
    assert dict(failed.attributes or {})["mfa_fsm.idp.status_code"] == 500
    (http,) = telemetry.children(failed)
    assert http.status.status_code is trace.StatusCode.ERROR
    assert dict(http.attributes or {})["error.type"] == "500"
    assert dict(http.attributes or {})["http.response.status_code"] == 500

    entrust_emulator.faults.inject("reset", path="/complete")
    with pytest.raises(TransportError):
        flow.send("submit_first_factor")
    dropped = telemetry.steps()[-1]
    assert "mfa_fsm.idp.status_code" not in dict(dropped.attributes or {})
    (http,) = telemetry.children(dropped)
    http_attributes = dict(http.attributes or {})
    assert "http.response.status_code" not in http_attributes
    assert http_attributes["error.type"] == "mfa_fsm.core.errors.TransportError"

    assert flow.state == "AwaitingFirstFactor"
    metrics = telemetry.metrics()
    assert set(metrics) == {"mfa_fsm.flows.started"}
    assert_no_leak(telemetry, recorder, flow.flow_id)


def test_uninstrumented_steps_write_nothing(
    telemetry: Telemetry, entrust_emulator: EntrustEmulator, recorder: SecretRecorder
) -> None:
    """After uninstrument() steps run exactly as before and no span is written."""
    otel.uninstrument()
    client = entrust_login(entrust_emulator, recorder)
    assert client.send("submit_first_factor").state == "AwaitingSecondFactor"
    assert telemetry.spans() == []
    assert telemetry.metrics() == {}


def test_flow_root_follows_the_log_key() -> None:
    """The flow root is the same for the same id and key (every process sharing
    MFA_FSM_LOG_KEY agrees on a login's trace), and another key gives another trace."""
    try:
        set_log_key("k" * 32)
        first = otel.flow_root("flow-1")
        assert otel.flow_root("flow-1") == first
        assert otel.flow_root("flow-2").trace_id != first.trace_id
        assert first.is_remote and first.trace_flags.sampled
        set_log_key("j" * 32)
        assert otel.flow_root("flow-1").trace_id != first.trace_id
    finally:
        set_log_key(None)


def test_without_instrument_opentelemetry_is_never_imported() -> None:
    """A whole Entrust OTP login (start and three steps over HTTP) in a fresh interpreter
    loads no OpenTelemetry module: the default path costs nothing."""
    script = textwrap.dedent(
        """
        import json, sys
        from mfa_fsm import EntrustConfig, EntrustFlow
        from mfa_fsm.core.identity import VerifiedUser
        from mfa_fsm.testing.entrust import EntrustEmulator

        with EntrustEmulator() as emulator:
            config = EntrustConfig(
                base_url=emulator.base_url, application_id=emulator.application_id
            )
            flow = EntrustFlow.start(config=config, verified_user=VerifiedUser("jsmith"))
            flow.send("submit_first_factor")
            flow.send("select_second_factor", factor="OTP")
            flow.send("submit_response", answer=emulator.last_otp("jsmith"))
        print(json.dumps({
            "state": flow.state,
            "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
        }))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"state": "Completed", "otel": []}


class _BrokenTracer(trace.Tracer):
    """A tracer whose every span fails, as a misconfigured SDK or exporter might."""

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        raise RuntimeError("the tracer is broken")

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the tracer is broken")


class _BrokenTracerProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _BrokenTracer()


def test_broken_telemetry_never_breaks_a_login(
    entrust_emulator: EntrustEmulator,
    recorder: SecretRecorder,
    leak_guard: list[dict[str, object]],
) -> None:
    """When writing a span fails, the step still succeeds, exactly as without tracing, and
    the failure is logged by its class."""
    meters = MeterProvider(shutdown_on_exit=False)
    otel.instrument(tracer_provider=_BrokenTracerProvider(), meter_provider=meters)
    try:
        client = entrust_login(entrust_emulator, recorder)
        assert client.send("submit_first_factor").state == "AwaitingSecondFactor"
    finally:
        otel.uninstrument()
        meters.shutdown()
    failures = [event for event in leak_guard if event["event"] == "mfa_fsm.otel_failed"]
    assert [event["error"] for event in failures] == ["RuntimeError", "RuntimeError"]
    assert [event["log_level"] for event in failures] == ["warning", "warning"]


class _InstrumentedTransport:
    """A transport that opens a span of its own around each request, as the ``requests``
    instrumentation of OpenTelemetry would."""

    def __init__(self, inner: SecretRecorder, tracer: trace.Tracer) -> None:
        self.inner = inner
        self.tracer = tracer

    def send(self, request: Any) -> Any:
        with self.tracer.start_as_current_span("requests POST"):
            return self.inner.send(request)


def test_a_send_step_span_is_current_while_it_runs(
    telemetry: Telemetry, entrust_emulator: EntrustEmulator, recorder: SecretRecorder
) -> None:
    """A span another instrumentation opens during a ``send`` is a child of the step's span
    (the step's span is current while it runs), next to the step's own IdP request span."""
    transport = _InstrumentedTransport(
        recorder, telemetry.tracer_provider.get_tracer("requests instrumentation")
    )
    config = entrust_config(entrust_emulator)
    flow = EntrustFlow.start(
        config=config, verified_user=VerifiedUser("jsmith"), transport=transport
    )
    flow.send("submit_first_factor")
    step = telemetry.steps()[-1]
    children = telemetry.children(step)
    assert sorted(span.name for span in children) == [
        f"POST {ENTRUST_COMPLETE}",
        "requests POST",
    ]
    assert {span.context.trace_id for span in children} == {otel.flow_root(flow.flow_id).trace_id}
