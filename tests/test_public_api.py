"""The public surface: mfa_fsm.__all__ lists exactly the public names, and they import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mfa_fsm


def test_all_lists_exactly_the_public_names() -> None:
    """Every public attribute of mfa_fsm is in __all__ and every name in __all__ exists."""
    public = {name for name in dir(mfa_fsm) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(mfa_fsm, name)).__name__ == "module"}
    assert set(mfa_fsm.__all__) == public - modules


def test_import_needs_no_optional_dependency() -> None:
    """import mfa_fsm works without sqlalchemy, redis or cryptography; those stores load lazily."""
    code = (
        "import sys\n"
        "for name in ('sqlalchemy', 'redis', 'cryptography', 'psycopg'):\n"
        "    sys.modules[name] = None\n"
        "import mfa_fsm\n"
        "mfa_fsm.Engine(mfa_fsm.MemoryStore(), [])\n"
        "try:\n"
        "    mfa_fsm.SqlStore\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('SqlStore imported without sqlalchemy')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert mfa_fsm.SqlStore.__module__ == "mfa_fsm.stores.sql"


def test_all_is_sorted() -> None:
    """__all__ is kept sorted so additions are easy to review."""
    assert list(mfa_fsm.__all__) == sorted(mfa_fsm.__all__)


def test_error_tree() -> None:
    """Caller misuse, store refusal, IdP refusal and network failure are separate branches
    under MfaError."""
    assert issubclass(mfa_fsm.EventNotAllowed, mfa_fsm.UsageError)
    assert issubclass(mfa_fsm.InvalidInput, mfa_fsm.UsageError)
    assert issubclass(mfa_fsm.SnapshotError, mfa_fsm.UsageError)
    assert issubclass(mfa_fsm.FlowConflict, mfa_fsm.StoreError)
    assert issubclass(mfa_fsm.IdpReplyError, mfa_fsm.IdpError)
    branches = (
        mfa_fsm.UsageError,
        mfa_fsm.StoreError,
        mfa_fsm.Throttled,
        mfa_fsm.IdpError,
        mfa_fsm.TransportError,
    )
    for branch in branches:
        assert branch.__bases__ == (mfa_fsm.MfaError,)
    for store_error in (
        mfa_fsm.FlowNotFound,
        mfa_fsm.FlowBusy,
        mfa_fsm.ResultUnavailable,
        mfa_fsm.SealedStateError,
        mfa_fsm.SealedStateStale,
        mfa_fsm.StoreUnavailable,
    ):
        assert issubclass(store_error, mfa_fsm.StoreError)
        assert not issubclass(store_error, mfa_fsm.UsageError)
    assert not issubclass(mfa_fsm.IdpError, mfa_fsm.UsageError)
    assert not issubclass(mfa_fsm.TransportError, mfa_fsm.IdpError)
    # A provider's table gap is its own bug: neither the caller's nor the IdP's.
    assert issubclass(mfa_fsm.UnmodelledOutcome, mfa_fsm.MfaError)
    assert not issubclass(mfa_fsm.UnmodelledOutcome, mfa_fsm.UsageError | mfa_fsm.IdpError)


#: What an Entrust-only handler must never load: the other provider, the stores and the web
#: parts of mfa_fsm, and the libraries only those need.
NOT_FOR_ENTRUST = (
    "mfa_fsm.cyberark",
    "mfa_fsm.stores",
    "mfa_fsm.engine",
    "mfa_fsm.web",
    "mfa_fsm.testing",
    "sqlalchemy",
    "redis",
    "flask",
    "cryptography",
    "psycopg",
    # requests loads with the first flow that has no transport of its own
    "requests",
    "mfa_fsm.core.transport",
    "httpx",
    # loaded on first use (import time, issue 12): the snapshot codec's libraries with the
    # first snapshot read or written, structlog with the first log event, the cookie and
    # HTTP-date parsers by the transports and the first Retry-After date
    "cattrs",
    "msgspec",
    "structlog",
    "http.cookiejar",
    "email",
    # the Entrust reply records with the first IdP reply, the back-off with the first retry
    # or failed poll (their attrs classes cost import time)
    "mfa_fsm.entrust.replies",
    "mfa_fsm.core.backoff",
)


def loaded_after(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``statement``."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))\n"
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(run.stdout.split())


@pytest.mark.parametrize(
    "statement",
    [
        "from mfa_fsm import EntrustConfig, EntrustFlow",
        "import mfa_fsm.entrust.flow",
        "import mfa_fsm; mfa_fsm.EntrustFlow.restore",
        "from mfa_fsm import EntrustFlow, HttpRequest, HttpResponse, Transport",
    ],
)
def test_an_entrust_import_loads_only_what_entrust_uses(statement: str) -> None:
    """Importing the Entrust flow loads the core and Entrust, nothing of CyberArk, the stores,
    the web parts or their libraries."""
    loaded = loaded_after(statement)
    assert "mfa_fsm.entrust.flow" in loaded
    assert "statemachine" in loaded
    unwanted = sorted(
        name
        for name in loaded
        if any(name == top or name.startswith(top + ".") for top in NOT_FOR_ENTRUST)
    )
    assert unwanted == []


def test_bare_import_loads_no_provider() -> None:
    """``import mfa_fsm`` alone loads only the error classes; every public name still
    resolves on first use."""
    loaded = loaded_after("import mfa_fsm")
    assert not {name for name in loaded if name.startswith("mfa_fsm.")} - {
        "mfa_fsm.core",
        "mfa_fsm.core.errors",
    }
    assert "statemachine" not in loaded
    for name in mfa_fsm.__all__:
        assert getattr(mfa_fsm, name).__name__ == name
