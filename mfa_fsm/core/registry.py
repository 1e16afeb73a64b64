"""The provider registry: every identity provider mfa_fsm can run, by name, in one place.

A provider is a :class:`~mfa_fsm.core.flow.Flow` subclass. The registry is filled two ways:

* **entry points** in the group ``mfa_fsm.providers`` (:data:`ENTRY_POINT_GROUP`): the entry
  point's name is the provider's name and its value the flow class, e.g. in a separate
  package's ``pyproject.toml``::

      [project.entry-points."mfa_fsm.providers"]
      okta = "mfa_okta.flow:OktaFlow"

  mfa_fsm declares its own providers the same way. An entry point is loaded (its module
  imported) only when that provider is first looked up, so importing this module, or asking
  for one provider, never imports the others (a serverless handler pays each import on every
  cold start).
* :func:`register_provider`, for a flow class defined in the application or a test; it wins
  over an entry point of the same name.

The engines (``Engine(store, [config])`` finds the flow class whose ``config_type`` the
configuration is), the web integration, the CLI (``mfa-fsm login``, ``emulate``, ``demo``,
``diagrams``) and the demo all read providers from here, and everything they need to know
about a provider (its label, its settings, its emulator) is declared on its flow class.

Errors: looking up a name nobody registered raises :class:`UsageError` listing the names
known; an entry point that fails to import, or names something that is not a flow class of
that name, raises :class:`UsageError` naming the entry point.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from mfa_fsm.core.errors import UsageError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from mfa_fsm.core.flow import Flow

#: The entry point group a package declares its providers in (name = provider name).
ENTRY_POINT_GROUP = "mfa_fsm.providers"


class _SettingFields(NamedTuple):
    field: str
    option: str | None
    help: str
    env: str | None = None
    required: bool = False
    secret: bool = False


# A NamedTuple (immutable, with equality and a repr) checked in __new__, not an attrs class:
# every flow class builds its settings when it is imported, where attrs' generated methods
# cost about half a millisecond per class (issue 12).
class Setting(_SettingFields):
    """One field of a provider's configuration that a command line or the environment gives
    (``mfa-fsm login`` against a real tenant reads them; a flow class lists its own in
    ``settings``).

    ``field`` is the keyword of the provider's configuration factory
    (:meth:`~mfa_fsm.core.flow.Flow.config_from_settings`: by default the configuration
    class itself); ``option`` the command-line option (options several providers declare are
    one option), ``None`` for a setting never given on a command line; ``env`` the
    environment variable read when the option is not given; ``required``: the login refuses
    to run without it. ``secret`` marks a credential (an API secret key): it has no
    command-line option (a process's arguments are visible to every user of the machine,
    ``ps``), so it comes from ``env`` or is asked for at the terminal without echo. Raises
    :class:`UsageError` for a secret setting that names an option, or any setting that
    names neither an option nor an environment variable.
    """

    __slots__ = ()

    def __new__(  # noqa: PLR0917 - the fields, positional as the NamedTuple takes them
        cls,
        field: str,
        option: str | None,
        help: str,
        env: str | None = None,
        required: bool = False,
        secret: bool = False,
    ) -> Setting:
        if secret and option is not None:
            raise UsageError(
                f"setting {field!r} is secret: give it env= and option=None (a command "
                "line is visible to every user of the machine)"
            )
        if option is None and env is None and not secret:
            raise UsageError(f"setting {field!r} needs an option or an env variable")
        return super().__new__(cls, field, option, help, env, required, secret)


def config_from_settings(flow: type[Flow], values: Mapping[str, Any]) -> object:
    """``flow``'s configuration from its settings' values (``field`` -> value, as
    ``mfa-fsm login`` read them), built by the flow's
    :meth:`~mfa_fsm.core.flow.Flow.config_from_settings` (a provider whose configuration is
    not flat, such as one holding a credentials object, builds it there).

    Raises :class:`UsageError` naming the provider when the values do not make a valid
    configuration; the message repeats the factory's complaint, which names fields, never
    values (a value may be a secret key).
    """
    from mfa_fsm.core.errors import MfaError  # noqa: PLC0415

    try:
        return flow.config_from_settings(values)
    except MfaError as exc:
        raise UsageError(f"the {flow.label} settings are not valid: {exc}") from None
    except (TypeError, ValueError) as exc:
        # attrs and cattrs name the field in these; the value is not repeated.
        raise UsageError(
            f"the {flow.label} settings are not valid ({type(exc).__name__})"
        ) from None


_lock = threading.Lock()
#: provider name -> flow class: registered directly, or an entry point already loaded
_flows: dict[str, type[Flow]] = {}
#: names registered with register_provider (not from an entry point)
_registered: set[str] = set()
#: provider name -> its entry point; read from the installed packages on first use
_entry_points: dict[str, EntryPoint] | None = None


def _declared() -> dict[str, EntryPoint]:
    """The installed packages' entry points of :data:`ENTRY_POINT_GROUP`, by name (read once)."""
    global _entry_points  # noqa: PLW0603 - one read of the installed metadata per process
    if _entry_points is None:
        # Imported here: reading package metadata is needed only once a provider is asked for.
        from importlib.metadata import entry_points  # noqa: PLC0415

        found: dict[str, EntryPoint] = {}
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            found.setdefault(entry.name, entry)  # the first installed package wins a name
        _entry_points = found
    return _entry_points


def register_provider(flow: type[Flow], *, replace: bool = False) -> type[Flow]:
    """Register ``flow`` under its ``provider`` name and return it (usable as a decorator).

    A class registered here is found before an entry point of the same name. Registering a
    second, different class under a name already registered raises :class:`UsageError`
    unless ``replace=True`` (two plugins claiming one name is a mistake to see, not to
    guess through); registering the same class again is a no-op.
    """
    from mfa_fsm.core.flow import Flow  # noqa: PLC0415 - the registry itself stays light

    if not (isinstance(flow, type) and issubclass(flow, Flow)):
        raise UsageError(f"register_provider takes a Flow subclass, not {flow!r}")
    name = flow.provider
    with _lock:
        held = _flows.get(name)
        if held is not None and held is not flow and name in _registered and not replace:
            raise UsageError(
                f"provider {name!r} is already registered as {held.__qualname__}; pass "
                "replace=True to register another class under that name"
            )
        _flows[name] = flow
        _registered.add(name)
    return flow


def unregister_provider(name: str) -> None:
    """Forget a class registered with :func:`register_provider` under ``name`` (an entry point
    of that name, if any, is found again on the next lookup). Unknown names are no error."""
    with _lock:
        if name in _registered:
            _registered.discard(name)
            del _flows[name]


def provider_names() -> tuple[str, ...]:
    """Every provider's name, registered or declared by an entry point, sorted. Imports no
    provider."""
    return tuple(sorted({*_flows, *_declared()}))


def provider_flow(name: str) -> type[Flow]:
    """The flow class of provider ``name``, loading its entry point on first use.

    Raises :class:`UsageError` for a name no one registered (the message lists the known
    names) or an entry point that does not load a flow class of that name.
    """
    held = _flows.get(name) if isinstance(name, str) else None
    if held is not None:
        return held
    entry = _declared().get(name) if isinstance(name, str) else None
    if entry is None:
        # The name may come from a request or a command line: repeat it only when short.
        shown = repr(name) if isinstance(name, str) and len(name) <= 40 else "?"
        raise UsageError(
            f"no identity provider is called {shown}; the providers are "
            f"{list(provider_names())} (install the package that provides it, or "
            "register_provider() its flow class)"
        )
    return _load(entry)


def provider_flows() -> dict[str, type[Flow]]:
    """Every provider's flow class, by name, sorted by name. Loads every entry point."""
    return {name: provider_flow(name) for name in provider_names()}


def flow_for_config(config: object) -> type[Flow]:
    """The flow class whose ``config_type`` ``config`` is an instance of (exactly its type).

    Looks first at the classes already loaded, then at entry points from the configuration's
    own package (``mfa_fsm.entrust.client.EntrustConfig`` -> ``mfa_fsm.entrust...``), then at
    the rest, so an application configuring one provider imports only that one. Raises
    :class:`UsageError` when no provider takes such a configuration.
    """
    wanted = type(config)
    package = wanted.__module__.rpartition(".")[0] or wanted.__module__

    def loaded_first(name: str) -> tuple[int, str]:
        entry = _declared().get(name)
        if name in _flows or (entry is not None and entry.module in sys.modules):
            return (0, name)
        if entry is not None and (entry.module + ".").startswith(package + "."):
            return (1, name)
        return (2, name)

    for name in sorted(provider_names(), key=loaded_first):
        flow = provider_flow(name)
        if getattr(flow, "config_type", None) is wanted:
            return flow
    raise UsageError(
        f"no provider takes a {wanted.__name__}: the providers are {list(provider_names())}, "
        "and each names its configuration class in config_type (install or register the "
        "provider's package)"
    )


def _load(entry: EntryPoint) -> type[Flow]:
    from mfa_fsm.core.flow import Flow  # noqa: PLC0415

    try:
        loaded: Any = entry.load()
    except Exception as exc:  # an installed plugin's import error: say which entry point
        raise UsageError(
            f"the {ENTRY_POINT_GROUP} entry point {entry.name!r} ({entry.value}) does not "
            f"load: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Flow)):
        raise UsageError(
            f"the {ENTRY_POINT_GROUP} entry point {entry.name!r} ({entry.value}) is not a "
            "mfa_fsm Flow subclass"
        )
    if loaded.provider != entry.name:
        raise UsageError(
            f"the {ENTRY_POINT_GROUP} entry point {entry.name!r} loads {loaded.__qualname__}, "
            f"whose provider is {loaded.provider!r}: the two names must be the same"
        )
    with _lock:
        # A class registered directly meanwhile wins, as in provider_flow.
        return _flows.setdefault(entry.name, loaded)
