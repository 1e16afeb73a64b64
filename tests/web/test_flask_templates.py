"""Flask applications override the pages' templates as Flask always let them: a template of
the same name in the application's own templates folder wins over the package's."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, session

from mfa_fsm import Engine, EntrustConfig, MemoryStore
from mfa_fsm.testing import EntrustEmulator
from mfa_fsm.web.flask import mfa_blueprint


def test_the_applications_template_folder_comes_first(
    tmp_path: Path, entrust_emulator: EntrustEmulator
) -> None:
    (tmp_path / "mfa_fsm").mkdir()
    (tmp_path / "mfa_fsm" / "start.html").write_text(
        "<!doctype html><title>{{ title }}</title><h1>The application's own start</h1>"
    )
    config = EntrustConfig(
        base_url=entrust_emulator.base_url, application_id=entrust_emulator.application_id
    )
    app = Flask(__name__, template_folder=str(tmp_path))
    app.secret_key = "test-secret-key-of-enough-length-0123456789"
    mfa = mfa_blueprint(Engine(MemoryStore(), [config]), current_user=lambda: session.get("u"))
    app.register_blueprint(mfa, url_prefix="/login")
    body = app.test_client().get("/login/").get_data(as_text=True)
    assert "The application's own start" in body
    # Every other page still comes from the package.
    lost = app.test_client().get("/login/f/AAAAAAAAAAAA").get_data(as_text=True)
    assert "Please start again" in lost
