"""The README's complete web apps (Flask and FastAPI) run as written: each is loaded from the
README, served over real HTTP, and signs a user in against its bundled Entrust emulator."""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from mfa_fsm.testing.entrust import DEMO_TOKEN_CODE
from tests.support.web import Client, serve
from tests.support.web_apps import starlette_app

README = Path(__file__).resolve().parent.parent.parent / "README.md"


def example(name: str) -> str:
    """The code block that follows ``<!-- example: name -->`` in the README."""
    found = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```python\n(.*?)\n```", README.read_text(), re.S
    )
    assert found, f"no example {name} in the README"
    return found.group(1)


@contextlib.contextmanager
def loaded(name: str, tmp_path: Path) -> Iterator[ModuleType]:
    path = tmp_path / name
    path.write_text(example(name))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(path.stem, None)
        module.idp.stop()


@pytest.mark.parametrize("name", ["flask_demo.py", "fastapi_demo.py"])
def test_the_readme_web_app_signs_a_user_in(name: str, tmp_path: Path) -> None:
    with loaded(name, tmp_path) as module:
        server = serve if name.startswith("flask") else starlette_app.serve
        with server(module.app) as base:
            client = Client(base)
            assert "<form" in client.get("/").text
            refused = client.request("POST", "/signin", user="jsmith", password="wrong")
            assert refused.status_code == 401
            started = client.request("POST", "/signin", user="jsmith", password="demo")
            assert started.status_code == 303
            client.flow_url = started.headers["Location"]
            client.get(client.flow_url)
            assert client.step("factor", factor="TOKEN").status_code == 303
            done = client.post(f"{client.flow_url}/response", response=DEMO_TOKEN_CODE)
            assert done.status_code in (302, 303) and done.headers["Location"] == "/"
            assert client.get("/").text == "Signed in as jsmith"
