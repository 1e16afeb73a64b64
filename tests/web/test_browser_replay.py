"""Completion replay in Chromium (issue 11, item 2), in every web framework: the poll that
completes an approved push loses its reply (the server completed the flow and set the
application's session cookie; the browser never saw the answer). The page's script retries,
the repeat gets on_complete's answer again, and the browser lands in the application signed
in, with no second IdP call for the completion."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from mfa_fsm import EntrustConfig
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.testing import EntrustEmulator
from tests.support.web_apps import ADAPTER_APPS as FRAMEWORKS
from tests.support.web_apps import APP_PASSWORD


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_lost_completing_poll_still_signs_the_user_in(
    framework: str, page: Page, context: BrowserContext, entrust_emulator: EntrustEmulator
) -> None:
    module = importlib.import_module(f"tests.support.web_apps.{framework}_app")
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    calls: list[FlowView] = []
    engine = module.make_engine([config])
    with module.live(engine, secure_cookies=False, throttle=None, calls=calls) as base:
        lost: list[int] = []

        def lose_the_completing_reply(route: Route) -> None:
            if lost:
                route.continue_()
                return
            kept: Any = context.cookies()
            answer = route.fetch(max_redirects=0)  # the server answers this poll...
            if answer.json().get("location") != "/app/home":
                route.fulfill(response=answer)  # still pending: delivered as it is
                return
            lost.append(answer.status)  # ...it completed the flow, and its answer is lost
            context.clear_cookies()
            context.add_cookies(kept)
            route.abort("connectionreset")

        signed = page.request.post(
            f"{base}/app/signin",
            form={"user": "pushmc", "password": APP_PASSWORD, "provider": "entrust"},
            max_redirects=0,
        )
        assert signed.status == 303
        page.goto(base + signed.headers["location"])
        # Routed before the push starts: a poll sent before the route was set could
        # otherwise complete the flow unseen on a loaded machine.
        page.route("**/poll", lose_the_completing_reply)
        page.locator('form:has(input[name="factor"][value="TOKENPUSH"]) button').click()
        completions = len(entrust_emulator.calls_to("/complete"))
        entrust_emulator.approve_push("pushmc")
        expect(page).to_have_url(f"{base}/app/home", timeout=15_000)
        assert lost == [200]  # the completing poll's JSON answer never reached the page
        assert len(calls) == 2 and calls[1] is calls[0]  # on_complete answered again
        # The IdP was asked once for the push's result, not again for the repeat.
        assert len(entrust_emulator.calls_to("/complete")) == completions + 1
        assert page.request.get(f"{base}/app/whoami").text() == "signed in as pushmc"
