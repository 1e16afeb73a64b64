"""The framework-neutral core driven directly, as a new adapter would drive it: requests in,
answers out, with plans.run over a real Engine and the Entrust emulator."""

from __future__ import annotations

import re

import pytest

from mfa_fsm import Engine, EntrustConfig, MemoryStore, UsageError
from mfa_fsm.core.plans import run
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.web.core import ROUTES, AppAnswer, PageAnswer, PageRequest, WebCore

SECRET = "core-test-secret-of-enough-length-0123456789"


@pytest.fixture
def core(entrust_emulator: EntrustEmulator) -> WebCore:
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    return WebCore(
        Engine(MemoryStore(), [config]), secret_key=SECRET, current_user=True, throttle=None
    )


def cookies_of(answer: PageAnswer) -> dict[str, str]:
    found = {}
    for name, value in answer.headers:
        if name == "Set-Cookie":
            key, _, rest = value.partition("=")
            found[key] = rest.split(";")[0]
    return found


@pytest.mark.parametrize(
    ("accept", "json"),
    [
        ("application/json", True),
        ("application/json, */*;q=0.1", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("*/*", False),
        ("", False),
        ("application/json;q=0", False),
    ],
)
def test_wants_json_ranks_accept_as_werkzeug_does(accept: str, json: bool) -> None:
    request = PageRequest("GET", "flow", "/login", headers={"accept": accept})
    assert request.wants_json() is json


def test_routes_translate_to_werkzeug_rules() -> None:
    assert [r.flask_rule for r in ROUTES] == ["/", "/begin", "/f/<handle>", "/f/<handle>/<step>"]


def test_a_login_through_the_neutral_api(core: WebCore) -> None:
    """Begin for the application's user, choose the soft token, answer: the completing answer
    asks for on_complete; finish() with the app's redirect keeps its cookie and adds ours."""
    begun = run(
        core.begin(PageRequest("POST", "begin", "/login", user=lambda: "jsmith"), "entrust")
    )
    assert begun.status == 303
    location = begun.header("Location")
    assert location is not None and location.startswith("/login/f/")
    handle = location.rsplit("/", 1)[1]
    jar = cookies_of(begun)
    page = run(core.handle(PageRequest("GET", "flow", "/login", {"handle": handle}, cookies=jar)))
    jar |= cookies_of(page)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.body.decode())
    assert csrf and page.header("Content-Security-Policy")

    def post(step: str, **form: str) -> PageAnswer:
        fields = [("csrf_token", csrf.group(1)), *form.items()]
        params = {"handle": handle, "step": step}
        return run(core.handle(PageRequest("POST", "step", "/login", params, fields, cookies=jar)))

    assert post("factor", factor="TOKEN").status == 303
    done = post("response", response="24681357")
    assert done.complete is not None and done.complete.result is not None
    assert done.complete.result.token  # the IdP's token, for on_complete only
    app = AppAnswer(302, "/home", ["session=abc; Path=/; HttpOnly"])
    final = core.finish(done, app)
    assert final.use_app and final.status == 302
    assert ("Cache-Control", "no-store") in final.headers
    with pytest.raises(UsageError):
        core.finish(final, None)


def test_a_framework_that_checks_csrf_itself(core: WebCore) -> None:
    """With framework_csrf the core skips its own check and renders the framework's field."""
    request = PageRequest(
        "POST",
        "begin",
        "/login",
        form=[("provider", "entrust")],
        user=lambda: "jsmith",
        framework_csrf=("csrfmiddlewaretoken", "django-token"),
    )
    assert run(core.handle(request)).status == 303
    start = run(
        core.handle(
            PageRequest(
                "GET",
                "start_page",
                "/login",
                user=lambda: "jsmith",
                framework_csrf=("csrfmiddlewaretoken", "django-token"),
            )
        )
    )
    assert 'value="django-token"' in start.body.decode()
    assert not [v for k, v in start.headers if k == "Set-Cookie" and "_csrf=" in v]


def test_every_form_carries_the_frameworks_csrf_field(core: WebCore) -> None:
    """Under a framework that checks CSRF itself (Django's CsrfViewMiddleware), every form of
    every page (start, picker, code with "another way", resend and cancel, failed with "Try
    again") carries the framework's field, never the core's ``csrf_token``."""
    csrf = ("csrfmiddlewaretoken", "django-token")

    def ask(method: str, route: str, cookies: dict[str, str], **params: str) -> PageAnswer:
        form = [(k, v) for k, v in params.items() if k not in ("handle", "step")]
        path = {k: v for k, v in params.items() if k in ("handle", "step")}
        request = PageRequest(
            method,
            route,
            "/login",
            params=path,
            form=form,
            cookies=cookies,
            user=lambda: "jsmith",
            framework_csrf=csrf,
        )
        return run(core.handle(request))

    def check_forms(answer: PageAnswer) -> int:
        body = answer.body.decode()
        forms = re.findall(r"<form [^>]*method=\"post\".*?</form>", body, re.S)
        for form in forms:
            assert '<input type="hidden" name="csrfmiddlewaretoken" value="django-token">' in form
        assert 'name="csrf_token"' not in body
        return len(forms)

    assert check_forms(ask("GET", "start_page", {})) >= 2  # "Continue as", the typed form
    begun = ask("POST", "begin", {}, provider="entrust")
    cookies = cookies_of(begun)
    handle = begun.header("Location").rsplit("/", 1)[-1]  # type: ignore[union-attr]
    assert check_forms(ask("GET", "flow", cookies, handle=handle)) >= 3  # picker, cancel
    ask("POST", "step", cookies, handle=handle, step="factor", factor="TOKEN")
    assert check_forms(ask("GET", "flow", cookies, handle=handle)) >= 3  # code, ways, cancel
    ask("POST", "step", cookies, handle=handle, step="cancel")
    failed = ask("GET", "flow", cookies, handle=handle)
    assert "/again" in failed.body.decode()
    assert check_forms(failed) == 1  # "Try again"
