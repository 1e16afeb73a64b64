"""The ``mfa-fsm`` command: the web demo, a terminal login, the emulators, and the diagrams.

::

    mfa-fsm demo [--port 8700]               the login pages and the emulators, on loopback
    mfa-fsm login --provider P --emulator    walk through a login against P's emulator
    mfa-fsm login --provider P --base-url URL ... --user pat   ... against a real tenant
    mfa-fsm emulate [--tls]                  run the IdP emulators until Ctrl-C
    mfa-fsm diagrams [--check]               write (or check) diagrams/ from the machines
    mfa-fsm diagrams --flow ID --store URL   print a live flow's diagram, its state marked
    mfa-fsm verify [PROVIDER | module:Class ...]   check flows' tables against their handlers
    mfa-fsm purge URL [--table T]            delete the expired flows of a store (for cron)

Providers, their labels, settings (``--base-url``, ...) and emulators are read from the
provider registry (:mod:`mfa_fsm.core.registry`): a provider installed from another package
shows up here too.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hmac
import importlib
import ipaddress
import logging
import math
import os
import re
import select
import signal
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs
import structlog

from mfa_fsm import diagrams, verify
from mfa_fsm.core.driver import wait_while_pending
from mfa_fsm.core.errors import (
    EventNotAllowed,
    IdpError,
    InvalidInput,
    MfaError,
    ResendTooSoon,
    Throttled,
    UsageError,
    VerifiedUserRequired,
)
from mfa_fsm.core.flow import Flow, can_start_again
from mfa_fsm.core.identity import VerifiedUser, client_address
from mfa_fsm.core.registry import (
    Setting,
    config_from_settings,
    provider_flow,
    provider_flows,
    provider_names,
)
from mfa_fsm.core.snapshot import Choice, FlowView
from mfa_fsm.web import events

if TYPE_CHECKING:
    from mfa_fsm.stores.base import FlowStore
    from mfa_fsm.testing.demo_idps import DemoIdp

SPINNER = "|/-\\"
#: Challenge kinds whose code a person may type while the flow is also polled (an SMS link).
CODE_KINDS = frozenset({"otp", "token"})


#: Unicode categories never written to the terminal as they are (OWASP "Log Injection" and
#: CWE-150, improper neutralisation of escape sequences): controls (``Cc``: ESC starts the
#: ECMA-48 sequences that move the cursor, retitle the window or rewrite what was shown),
#: format characters (``Cf``: the bidi overrides and isolates of Unicode UAX #9, which make a
#: line read differently from its text: CVE-2021-42574, "Trojan Source"), line and paragraph
#: separators, surrogates and private-use characters.
UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every character of :data:`UNPRINTABLE` written as a visible escape
    (``\\x1b``, ``\\u202e``), so nothing it holds acts on the terminal; ``keep_newlines``
    keeps ``\\n`` (the tool's own multi-line messages)."""
    out: list[str] = []
    for char in text:
        if (keep_newlines and char == "\n") or unicodedata.category(char) not in UNPRINTABLE:
            out.append(char)
            continue
        code = ord(char)
        if code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def shown(text: str | None) -> str:
    """Text the IdP sent (a prompt, a label, a message), fit to print on one line: line
    breaks and tabs become spaces, any other control or bidi character a visible escape."""
    if not text:
        return ""
    return printable(" ".join(text.replace("\t", " ").splitlines()))


class Terminal:
    """Prompts and output; secrets are read without echo when a terminal is attached.

    Everything written goes through :func:`printable`: whatever the IdP sent cannot reach
    the terminal as an escape sequence or a bidi control, whichever code path prints it."""

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self._ended = False

    def say(self, text: str = "") -> None:
        self.stdout.write(printable(text, keep_newlines=True) + "\n")
        self.stdout.flush()

    def ask(self, prompt: str, *, secret: bool = False) -> str:
        prompt = printable(prompt, keep_newlines=True)
        if secret and self.stdin.isatty():
            return getpass.getpass(prompt, stream=self.stdout)
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise UsageError("input ended before the login finished")
        return line.rstrip("\n")

    def confirm(self, prompt: str) -> bool:
        """A yes/no question; no (the default) on Enter alone or when input has ended."""
        try:
            answer = self.ask(prompt)
        except UsageError:  # input ended: nobody is there to say yes
            return False
        return answer.strip().lower() in ("y", "yes")

    def typed_line(self) -> str | None:
        """A line the person has typed, if one is waiting; never waits for one (a push is
        being polled meanwhile). ``None`` when nothing was typed, and always once input has
        ended.

        A terminal or pipe is asked with ``select`` (POSIX) whether a read would block; a
        stream without a file descriptor (a script's ``StringIO``) is simply read. On a pipe
        that stays open, a line already read ahead into Python's buffer is seen only with
        the next input or the end of input (a terminal delivers one line per read)."""
        if self._ended:
            return None
        try:
            fileno = self.stdin.fileno()
        except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
            fileno = None
        if fileno is not None:
            try:
                ready, _, _ = select.select([fileno], [], [], 0)
            except (OSError, ValueError):  # not selectable here (a console on Windows)
                return None
            if not ready:
                return None
        line = self.stdin.readline()
        if not line:
            self._ended = True
            return None
        return line.rstrip("\n")

    def choose(self, prompt: str, options: Sequence[str]) -> int:
        for number, option in enumerate(options, 1):
            self.say(f"  {number}. {shown(option)}")
        while True:
            answer = self.ask(f"{prompt} [1-{len(options)}]: ").strip()
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                return int(answer) - 1
            self.say(f"Please type a number from 1 to {len(options)}.")


def walk(
    flow: Flow,
    term: Terminal,
    hint: Callable[[FlowView], None] | None = None,
    *,
    again: tuple[str, str | None] | None = None,
) -> FlowView:
    """Drive ``flow`` to its end, asking the person at ``term`` for each input.

    Works for every provider: what to ask is read from the view (see
    :mod:`mfa_fsm.web.events`, which the web pages use too). Everything the IdP sent is
    printed through :func:`shown`. Ctrl-C ends the flow at the IdP too (see
    :func:`_cancel_at_idp`) and goes on as KeyboardInterrupt. ``again`` is a factor and
    delivery to select by itself the first time the flow shows the factor menu (another
    request after one expired), when the IdP still offers that factor.

    An event the flow refuses before any IdP call (a resend inside its cooldown, a throttle,
    a malformed code, an event the state no longer takes) is said, and the walk goes on from
    the flow as it is (:func:`_send`): it never ends the login.
    """
    steps = {
        "AwaitingFirstFactor": _first_factor,
        "AwaitingSecondFactor": _pick_second_factor,
        "SecondFactorSelected": _answer,
        "OobPending": _wait,
    }
    view = flow.view()
    try:
        while not view.is_final:
            if hint is not None:
                hint(view)
            if again is not None and view.state == "AwaitingSecondFactor":
                view, again = _select_again(flow, view, term, again), None
                continue
            view = steps[view.state](flow, view, term)
    except KeyboardInterrupt:
        _cancel_at_idp(flow, term)
        raise
    return view


def _select_again(
    flow: Flow, view: FlowView, term: Terminal, again: tuple[str, str | None]
) -> FlowView:
    """Select the factor (and delivery) of the request that expired, if still offered."""
    factor, delivery = again
    choice = next((c for c in view.choices if c.supported and c.id == factor), None)
    if choice is None:
        term.say("That way is no longer offered; choose another.")
        return view
    if delivery not in choice.deliveries:
        delivery = None
    term.say(f"Sending another request: {shown(choice.label)}.")
    return _send(flow, term, "select_second_factor", **events.select_data(choice.id, delivery))


def _send(flow: Flow, term: Terminal, event: str, **data: Any) -> FlowView:
    """``flow.send(event, **data)``; a refusal made before any IdP call (the flow is then
    exactly as it was) is said in plain words, and the flow's view returned, so the walk asks
    again instead of ending the login: :class:`ResendTooSoon` (a code or request went out
    less than the cooldown ago), :class:`Throttled`, :class:`InvalidInput` (a malformed
    code: no attempt spent) and :class:`EventNotAllowed` (the flow moved on meanwhile)."""
    try:
        return flow.send(event, **data)
    except REFUSALS as exc:
        return _refused(flow, term, exc)


#: What :meth:`Flow.send` raises before any IdP call, the flow unchanged, that a person can
#: get past by waiting or typing something else.
REFUSALS = (Throttled, InvalidInput, EventNotAllowed)


def _refused(flow: Flow, term: Terminal, exc: MfaError) -> FlowView:
    """Say why ``flow`` refused an event (one of :data:`REFUSALS`); the flow's view."""
    if isinstance(exc, ResendTooSoon):
        term.say(_too_soon(flow, exc))
    elif isinstance(exc, Throttled):
        wait = max(math.ceil(exc.retry_after), 1)
        term.say(
            f"Too many tries in a short time, so nothing was sent; wait {wait} s and try again."
        )
    elif isinstance(exc, InvalidInput):
        term.say(_invalid(exc))
    else:
        term.say("That cannot be done at this step any more; here is where the login is now.")
    return flow.view()


def _too_soon(flow: Flow, exc: ResendTooSoon) -> str:
    """A resend (or the same factor chosen again) inside the cooldown: how long ago the last
    code or request went out, when the configuration says its cooldown, and how long to wait."""
    view = flow.view()
    challenge = view.challenge
    sent = "A code" if challenge is not None and challenge.accepts_code else "A request"
    wait = max(math.ceil(exc.retry_after), 1)
    cooldown = getattr(flow.config, "resend_cooldown", None)
    if isinstance(cooldown, int | float):
        # resend_at is rounded up to a whole second: up to 1 s more than the cooldown left
        ago = max(math.floor(cooldown - exc.retry_after), 0)
        when = "just now" if ago < 1 else f"{ago} s ago"
        return f"{sent} was already sent {when}; wait {wait} s before asking for another."
    return f"{sent} was already sent; wait {wait} s before asking for another."


#: What the library's code-format message names as its source, in the person's words.
_CODE_SOURCES = {
    "the tenant's otpLength": "your organisation's setting",
    "RFC 4226": "the usual length of one-time codes",
    "the length of Duo's passcodes": "the length of Duo passcodes",
}
_CODE_RULE = re.compile(r"must be (\d+(?: to \d+)?) digits \(([^)]*)\)")


def _invalid(exc: InvalidInput) -> str:
    """An event's field refused before any IdP call, for the person at the terminal: a typed
    code of the wrong length or with letters in plain words (the library's message names
    the configuration field it comes from, for developers); anything else as the library
    says it, without the field's name."""
    text = str(exc)
    prefix = f"{exc.field}: "
    problem = text[len(prefix) :] if text.startswith(prefix) else text
    rule = _CODE_RULE.search(problem) if exc.field == "answer" else None
    if rule is None:
        return f"Not sent: {problem}."
    count, source = rule.groups()
    return (
        f"The code must be {count} digits ({_CODE_SOURCES.get(source, source)}). Nothing was "
        "sent, so no attempt was used; check the code and type it again."
    )


#: Plain words for the deliveries a factor offers (``Choice.deliveries``).
DELIVERY_WORDS = {"SMS": "text message", "EMAIL": "e-mail", "VOICE": "voice call"}


def _cancel_at_idp(flow: Flow, term: Terminal) -> None:
    """Ctrl-C left the flow unfinished: end it at the IdP too (withdraws a pending push)."""
    _clear_line(term)
    if flow.is_final or "cancel" not in flow.allowed_events():
        return
    try:
        flow.send("cancel")
    except MfaError as exc:  # the IdP transaction dies with its token anyway
        term.say(f"\ncould not cancel at the identity provider: {exc}")
        return
    if flow.calls:  # the cancel step itself reached the IdP (Entrust's complete or logout)
        term.say("\ncancelled: the sign-in request was withdrawn at the identity provider")
    else:  # the IdP documents no call that withdraws it (CyberArk, Duo): it times out there
        term.say(
            "\ncancelled here; the identity provider offers no call to withdraw the request, "
            "so it ends there when it times out"
        )


def _clear_line(term: Terminal) -> None:
    """Wipe the spinner's line (the cursor back at its start)."""
    term.stdout.write("\r" + " " * 78 + "\r")
    term.stdout.flush()


def _first_factor(flow: Flow, view: FlowView, term: Terminal) -> FlowView:
    challenge = view.challenge
    if challenge is None:
        return _pick_second_factor(flow, view, term)
    if events.typed_first_factor(view):
        prefix = "Wrong password. " if challenge.rejected else ""
        if challenge.questions:
            typed = _ask_questions(challenge.questions, term)
        else:
            typed = [term.ask(f"{prefix}{shown(challenge.prompt) or 'Password'}: ", secret=True)]
        return _send(flow, term, "submit_first_factor", **events.first_factor_data(view, typed))
    if challenge.kind == "external":
        term.say("First factor checked by the application; asking the IdP what next.")
    else:
        term.say(shown(challenge.prompt))
    # Nothing typed: a refusal here would be refused again at once, so it ends the login.
    return flow.send("submit_first_factor")


def _ask_questions(questions: Sequence[str], term: Terminal) -> list[str]:
    return [term.ask(f"{shown(question)} ", secret=True) for question in questions]


def _pick_second_factor(flow: Flow, view: FlowView, term: Terminal) -> FlowView:
    usable = [c for c in view.choices if c.supported]
    if not usable:
        raise UsageError("the IdP offers no second factor mfa_fsm can drive")
    choice = usable[term.choose("Second factor", [c.label for c in usable])]
    delivery = None
    if len(choice.deliveries) > 1:
        words = [DELIVERY_WORDS.get(d, d) for d in choice.deliveries]
        delivery = choice.deliveries[term.choose("Send the code by", words)]
    return _send(flow, term, "select_second_factor", **events.select_data(choice.id, delivery))


def _answer(flow: Flow, view: FlowView, term: Terminal) -> FlowView:
    challenge = view.challenge
    if challenge is None:
        raise UsageError("the flow awaits an answer but shows no challenge")
    if challenge.rejected:
        left = challenge.attempts_left
        term.say("That was not right." + (f" {left} attempt(s) left." if left else ""))
    if challenge.questions:
        typed = _ask_questions(challenge.questions, term)
    else:
        offer = events.can_resend(view)
        other = events.can_choose(view)
        hints = ["press Enter alone to send a new code"] if offer else []
        hints += ['type "other" to try another way'] if other else []
        hint = f" (or {'; or '.join(hints)})" if hints else ""
        typed = [term.ask(f"{shown(challenge.prompt)}{hint}: ")]
        if offer and not typed[0].strip():
            return _resend(flow, view, term)
        if other and typed[0].strip().lower() == "other":
            return _pick_second_factor(flow, view, term)
    return _submit(flow, view, term, events.response_data(view, typed))


def _submit(flow: Flow, view: FlowView, term: Terminal, data: dict[str, Any]) -> FlowView:
    """``submit_response``; a code refused locally (wrong length or characters: nothing was
    sent to the IdP, no attempt spent) is said and asked again (:func:`_send`)."""
    return _send(flow, term, "submit_response", **data)


def _resend(flow: Flow, view: FlowView, term: Terminal) -> FlowView:
    """``resend``: a new code or request; a cooldown not yet over, or an IdP that refuses,
    is said, and the flow carries on as it was."""
    try:
        after = flow.send("resend")
    except REFUSALS as exc:
        return _refused(flow, term, exc)
    except IdpError as exc:
        if exc.transient:
            raise
        term.say(f"{exc}.")
        return flow.view()
    term.say("Sent again.")
    return after


def _wait(flow: Flow, view: FlowView, term: Terminal) -> FlowView:
    """``OobPending``: poll until the device answers, with a spinner; meanwhile the person
    may type ``new`` (send another request, after the resend cooldown), ``other`` (try
    another way) or a code (where the IdP takes one while it polls, or from a token app the
    user also has: Entrust TOKEN during a TOKENPUSH, Duo's passcode during a push)."""
    challenge = view.challenge
    if challenge is not None and challenge.number_to_match:
        term.say(f"Select {shown(challenge.number_to_match)} on your device.")
    if challenge is not None and challenge.kind in CODE_KINDS and events.takes_code(view):
        offer = events.can_resend(view)
        new = '; type "new" for a new code' if offer else ""
        code = term.ask(f"{shown(challenge.prompt)}\nType the code (or press Enter to wait{new}): ")
        code = code.strip()
        if offer and code.lower() == "new":
            return _resend(flow, view, term)
        if code:
            return _submit(flow, view, term, {"answer": code})
    offers = _pending_offers(view)
    if offers:
        term.say("While you wait, type " + "; or ".join(offers) + ", then Enter.")
    try:
        view = wait_while_pending(flow, on_tick=_spinner(term, flow, listen=bool(offers)))
    except _Typed as typed:
        _clear_line(term)
        return _typed_while_pending(flow, flow.view(), term, typed.line)
    _clear_line(term)
    return view


class _Typed(Exception):
    """Raised from the spinner to stop waiting: the person typed ``line``."""

    def __init__(self, line: str) -> None:
        super().__init__("typed")
        self.line = line


def _token_instead(view: FlowView) -> Choice | None:
    """The choice of a code from a token or authenticator app (kind ``token``) the person
    may switch to while a push or call is pending, where the flow takes a new choice."""
    if not events.can_choose(view):
        return None
    running = view.challenge.factor if view.challenge is not None else None
    for choice in view.choices:
        if choice.supported and choice.kind == "token" and choice.id != running:
            return choice
    return None


def _pending_offers(view: FlowView) -> list[str]:
    """What may be typed while ``view``'s request is pending, for the hint line."""
    offers = ['"new" to send another request'] if events.can_resend(view) else []
    if events.can_choose(view):
        offers.append('"other" to try another way')
    if _token_instead(view) is not None:
        offers.append("the code from your token or authenticator app instead")
    return offers


def _typed_while_pending(flow: Flow, view: FlowView, term: Terminal, line: str) -> FlowView:
    """Act on a line typed while a request is pending (see :func:`_wait`); the flow goes on
    waiting when the line asks for nothing it offers."""
    word = line.strip()
    if not word:
        return view
    if word.lower() == "new" and events.can_resend(view):
        return _resend(flow, view, term)
    if word.lower() == "other" and events.can_choose(view):
        return _pick_second_factor(flow, view, term)
    token = _token_instead(view)
    if token is not None and word.replace(" ", "").isdigit():
        try:  # Entrust re-selects with the current token (the push ends); Duo calls nothing
            switched = flow.send("select_second_factor", **events.select_data(token.id))
        except REFUSALS as exc:
            return _refused(flow, term, exc)
        except IdpError as exc:
            if exc.transient:
                raise
            term.say(f"{exc}; still waiting for the request on your device.")
            return flow.view()
        return _submit(flow, switched, term, events.response_data(switched, [word]))
    offers = _pending_offers(view)
    term.say("Still waiting. Type " + "; or ".join(offers) + "." if offers else "Still waiting.")
    return view


def _spinner(term: Terminal, flow: Flow, *, listen: bool = False) -> Callable[[FlowView], None]:
    """The wait's tick: the spinner line, and with ``listen`` a look for a typed line
    (raises :class:`_Typed` with it, which stops the wait; the flow is between polls)."""
    started = flow.clock()
    ticks = iter(range(sys.maxsize))

    def tick(view: FlowView) -> None:
        if listen and (line := term.typed_line()) is not None:
            raise _Typed(line)
        now = flow.clock()
        frame = SPINNER[next(ticks) % len(SPINNER)]
        left = max(view.deadline - now, 0)
        term.stdout.write(
            f"\r{frame} waiting for approval on your device: {now - started:3.0f}s elapsed, "
            f"expires in {left:3.0f}s "
        )
        term.stdout.flush()

    return tick


@attrs.frozen
class _Target:
    """Where a terminal login goes: the provider's flow class and configuration, and, for an
    emulator, the running emulator that plays the user's phone."""

    flow_class: type[Flow]
    config: object
    idp: DemoIdp | None = None


def _demo_idp_class(flow_class: type[Flow]) -> type[DemoIdp]:
    """The emulator class a provider declares (``Flow.emulator``, imported only now)."""
    if flow_class.emulator is None:
        raise UsageError(
            f"{flow_class.label} has no emulator; give its settings for a real tenant instead"
        )
    module, _, name = flow_class.emulator.partition(":")
    found: type[DemoIdp] = getattr(importlib.import_module(module), name)
    return found


def _settings(args: argparse.Namespace, flow_class: type[Flow], term: Terminal) -> dict[str, Any]:
    """The configuration fields ``flow_class`` declares, from the command line or else the
    environment; a secret one (no option) from the environment or else asked for without
    echo; UsageError naming every missing one a real tenant needs."""
    values: dict[str, Any] = {}
    missing: list[Setting] = []
    to_ask: list[Setting] = []
    for setting in flow_class.settings:
        value = getattr(args, _dest(setting.option), None) if setting.option else None
        if value is None and setting.env is not None:
            value = os.environ.get(setting.env) or None
        if value is not None:
            values[setting.field] = value
        elif setting.secret and setting.required:
            to_ask.append(setting)  # asked once the options are known to be complete
        elif setting.required:
            missing.append(setting)
    if missing:
        options = " and ".join(s.option for s in missing if s.option)
        envs = " and ".join(s.env for s in missing if s.env is not None)
        raise UsageError(
            f"give --emulator, or {options}"
            + (f" (or {envs})" if envs else "")
            + f" for a real {flow_class.label} tenant"
        )
    for setting in to_ask:
        hint = f" (or set ${setting.env})" if setting.env else ""
        typed = term.ask(f"{flow_class.label} {setting.help}{hint}: ", secret=True).strip()
        if not typed:
            raise UsageError(f"the {flow_class.label} {setting.help} is required")
        values[setting.field] = typed
    return values


def _dest(option: str) -> str:
    return "setting_" + option.lstrip("-").replace("-", "_")


@contextlib.contextmanager
def _target(args: argparse.Namespace, term: Terminal) -> Iterator[_Target]:
    flow_class = provider_flow(args.provider)
    if not args.emulator:
        if not flow_class.settings:
            raise UsageError(
                f"{flow_class.label} declares no settings for a command-line login; "
                "use it from Python, or give --emulator"
            )
        options = {**_settings(args, flow_class, term), **_client_ip(args, flow_class)}
        yield _Target(flow_class, config_from_settings(flow_class, options))
        return
    with _demo_idp_class(flow_class)() as idp:
        users = ", ".join(user.user for user in idp.users)
        term.say(f"{idp.title} at {idp.base_url} (demo users: {users})")
        yield _Target(flow_class, idp.config(**_client_ip(args, flow_class)), idp)


def _client_ip(args: argparse.Namespace, flow_class: type[Flow]) -> dict[str, Any]:
    """``--client-ip`` for a configuration that takes a fixed end-user address (its
    ``client_ip`` field, sent to the IdP's risk rules on every call), else nothing."""
    config_type = flow_class.config_type
    takes_it = attrs.has(config_type) and "client_ip" in attrs.fields_dict(config_type)
    return {"client_ip": args.client_ip} if takes_it and args.client_ip else {}


def _emulator_hint(
    args: argparse.Namespace, target: _Target, term: Terminal, user: str
) -> Callable[[FlowView], None] | None:
    idp = target.idp
    if idp is None:
        return None
    # The pending requests already hinted at: one per flow, factor and send (a resend moves
    # resend_at; another way or a start again changes the others), so a wait resumed after
    # a typed line is quiet.
    hinted: set[tuple[str, str | None, int | None]] = set()

    def hint(view: FlowView) -> None:
        said = idp.hint(user, view)
        if said is not None:
            term.say(f"[emulator] {said}")
        challenge = view.challenge
        request = (
            view.flow_id,
            challenge.factor if challenge else None,
            challenge.resend_at if challenge else None,
        )
        if view.state != "OobPending" or request in hinted:
            return
        hinted.add(request)
        if args.approve_after is not None:
            term.say(f"[emulator] approving the push in {args.approve_after:g}s")
            timer = threading.Timer(args.approve_after, _approve_quietly, args=(idp, user))
            timer.daemon = True
            timer.start()
        elif (url := idp.approve_route(user)) is not None:
            term.say(f"[emulator] approve from another terminal: curl -X POST {url}")

    return hint


def _approve_quietly(idp: DemoIdp, user: str) -> None:
    with contextlib.suppress(LookupError):  # nothing waits any more (denied, expired)
        idp.approve(user)


#: Who checked the first factor when ``login --emulator`` plays the demo application.
CLI_CHECKED_BY = "mfa-fsm login, as the demo application (not the IdP)"


def _who(args: argparse.Namespace, target: _Target, term: Terminal, user: str) -> dict[str, object]:
    """The start options naming ``user``: a VerifiedUser only when someone checked their
    first factor outside the IdP (EXTERNAL), else the typed id (the IdP checks a password)."""
    if not target.flow_class.first_factor_outside:
        return {"user": user}
    app_passwords = target.idp.app_passwords if target.idp is not None else {}
    if args.first_factor_checked_by:
        # The operator vouches, on the command line, that this user's first factor was
        # checked elsewhere: the tool's equivalent of an application's verified session.
        checked_by = args.first_factor_checked_by
    elif user in app_passwords:
        idp = target.flow_class.label
        term.say(
            f"{idp} does not check {user}'s first factor: the application vouches for it, "
            "here with the demo application's own password, which the IdP never sees."
        )
        password = term.ask("Demo application password: ", secret=True)
        if not hmac.compare_digest(password.encode(), app_passwords[user].encode()):
            raise UsageError(
                "the demo application password is not right (`mfa-fsm demo` prints them)"
            )
        checked_by = CLI_CHECKED_BY
    else:
        return {"user": user}
    term.say(f"First factor: {user}'s password, checked by {checked_by}.")
    return {"verified_user": VerifiedUser(user, checked_by=checked_by)}


def cmd_login(args: argparse.Namespace, term: Terminal) -> int:
    client_address(args.client_ip)  # a malformed --client-ip fails before any prompt
    if args.provider is None:
        raise UsageError(f"give --provider, one of {list(provider_names())}")
    with _target(args, term) as target:
        user = args.user or term.ask("User id: ").strip()
        who = _who(args, target, term, user)
        hint, pending = _pending_recorder(_emulator_hint(args, target, term, user))
        with _cli_advice(args, target, user):
            flow = target.flow_class.start(config=target.config, **who)
        view = walk(flow, term, hint)
        while view.state == "Failed":
            _say_failed(view, term)
            again = pending[0] if view.failure == "expired" else None
            if not _again_wanted(view, term, user, resend=again is not None):
                return 1
            # A fresh flow for the same user (Flow.again): straight to the factors when the
            # first factor was vouched for, as the web pages' "Try again" does; after an
            # expired request ("send another request?") the same factor is selected again.
            with _cli_advice(args, target, user):
                vouched = who.get("verified_user")
                flow = flow.again(
                    verified_user=vouched if isinstance(vouched, VerifiedUser) else None
                )
            view = walk(flow, term, hint, again=again)
    result = view.result
    if result is None:  # pragma: no cover - a Completed view always holds its result
        raise UsageError("the flow completed without a result")
    # The name the person typed (CyberArk's user_id is a UUID); the IdP's display name after.
    name = shown(user)
    if result.display_name and result.display_name != user:
        name += f" ({shown(result.display_name)})"
    # Only a result that holds a token says so: Duo's Auth API hands back none (its
    # trusted_device_token only where the application remembers devices).
    held = f" (the result holds a token of {len(result.token)} characters)" if result.token else ""
    term.say(f"Authenticated as {name}{held}.")
    return 0


def _pending_recorder(
    hint: Callable[[FlowView], None] | None,
) -> tuple[Callable[[FlowView], None], list[tuple[str, str | None] | None]]:
    """``hint`` (if any), also noting, in a one-item list, the factor and delivery of the
    request the walk last waited for, or ``None`` once it moved to anything else: the
    request to send again when the flow then expired."""
    pending: list[tuple[str, str | None] | None] = [None]

    def noting(view: FlowView) -> None:
        challenge = view.challenge if view.state == "OobPending" else None
        pending[0] = (challenge.factor, challenge.delivery) if challenge is not None else None
        if hint is not None:
            hint(view)

    return noting, pending


def _say_failed(view: FlowView, term: Terminal) -> None:
    """Say why the flow failed, and the links the IdP offers."""
    detail = f": {shown(view.failure_detail)}" if view.failure_detail else ""
    term.say(f"Login failed ({view.failure}){detail}.")
    for label, url in events.next_steps(view):
        term.say(f"{shown(label)}: {shown(url)}")


def _again_wanted(view: FlowView, term: Terminal, user: str, *, resend: bool) -> bool:
    """Whether the person wants a fresh flow after ``view`` failed: "send another request"
    when ``resend`` (a request to the device expired, and the fresh flow sends it again),
    "start again" after any other ending that a new flow may get past
    (:func:`~mfa_fsm.core.flow.can_start_again`); no when input has ended."""
    if not can_start_again(view):
        return False
    if resend:
        return term.confirm(f"Send another request to {user}'s device? [y/N]: ")
    return term.confirm(f"Start again for {user}? [y/N]: ")


@contextlib.contextmanager
def _cli_advice(args: argparse.Namespace, target: _Target, user: str) -> Iterator[None]:
    """A provider's refusal to start for an unvouched user, as command-line advice (the
    library's message speaks of its Python API)."""
    try:
        yield
    except VerifiedUserRequired:
        demo = (
            "; with --emulator, a demo user whose application password this command asks "
            "for (`mfa-fsm demo` lists them)"
            if target.idp is not None
            else ""
        )
        raise UsageError(
            f"{target.flow_class.label} does not check {user}'s first factor here, so this "
            "login needs --first-factor-checked-by WHO: your statement that WHO (e.g. 'ACME "
            f"VPN password') has checked {user}'s first factor{demo}"
        ) from None


def cmd_demo(args: argparse.Namespace, term: Terminal) -> int:
    from mfa_fsm.web.demo import Demo  # noqa: PLC0415 - needs the web extra

    if not is_loopback(args.host):
        term.say(
            f"warning: serving on {args.host}: anyone who can reach it can approve pushes on "
            "the emulator control page; the demo is meant for loopback"
        )
    store = open_store(args.store) if args.store else None
    with Demo(
        args.host, args.port, store=store, sealed=args.sealed, framework=args.framework
    ) as demo:
        term.say(f"mfa_fsm demo: open {demo.url} in a browser")
        term.say(f"  pages served by {demo.framework}")
        term.say(f"  emulator control page (your phone): {demo.url}emulator")
        width = max(len(idp.title) for idp in demo.idps.values()) + 1
        for idp in demo.idps.values():
            term.say(f"  {idp.title + ':':<{width}} {idp.base_url}")
        term.say(f"  flows are kept in {demo.store_description}")
        app_passwords = {u: p for idp in demo.idps.values() for u, p in idp.app_passwords.items()}
        if app_passwords:
            term.say(
                f"  the demo application's own sign-in (EXTERNAL users): {demo.url}signin, "
                "passwords: "
                + ", ".join(f"{user} {password}" for user, password in app_passwords.items())
            )
        term.say("Demo users:")
        for idp in demo.idps.values():
            for user in idp.users:
                term.say(f"  {user.provider:<9} {user.user:<8} {user.how}")
        for idp in demo.idps.values():
            if idp.answers:
                term.say(f"{idp.answers}.")
        term.say("Ctrl-C stops.")
        _serve(args.seconds)
    return 0


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(seconds: float | None) -> None:
    """Block until Ctrl-C or SIGTERM (or for ``seconds``), so the caller's ``with`` blocks
    stop the servers and remove what they made either way."""
    if seconds is not None:
        time.sleep(seconds)
        return
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda number, frame: stop.set())
    try:
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _emulated() -> dict[str, type[Flow]]:
    """The providers that declare an emulator, by name."""
    return {name: flow for name, flow in provider_flows().items() if flow.emulator is not None}


def cmd_emulate(args: argparse.Namespace, term: Terminal) -> int:
    with contextlib.ExitStack() as running:
        idps = []
        for name, flow in _emulated().items():
            idp_class = _demo_idp_class(flow)
            port = getattr(args, f"port_{name}", None)
            idp = idp_class(
                host=args.host,
                port=idp_class.default_port if port is None else port,
                tls=args.tls,
                standalone=True,
            )
            idps.append(running.enter_context(idp))
        width = max((len(idp.title) for idp in idps), default=0) + 1
        for idp in idps:
            term.say(f"{idp.title + ':':<{width}} {idp.describe()}")
        if args.tls:
            for idp in idps:
                label = idp.title.replace("emulator", "CA certificate")
                term.say(f"{label + ':':<{width}} {idp.emulator.ca_file}")
        modules = sorted({type(idp.emulator).__module__ for idp in idps})
        term.say(
            "Demo users and control routes: see "
            + " and ".join(f"`pydoc {module}`" for module in modules)
            + ". Ctrl-C stops."
        )
        _serve(args.seconds)
    return 0


def cmd_diagrams(args: argparse.Namespace, term: Terminal) -> int:
    if args.flow or args.state:
        return _live_diagram(args, term)
    out = Path(args.out)
    if args.check:
        stale = diagrams.stale(out)
        if stale:
            term.say(f"stale diagrams: {', '.join(stale)}; run `mfa-fsm diagrams`")
            return 1
        term.say("diagrams are up to date")
        return 0
    for path in diagrams.write_all(out):
        term.say(f"wrote {path}")
    return 0


def _live_diagram(args: argparse.Namespace, term: Terminal) -> int:
    """One flow's diagram with a state marked: a stored flow's, or any provider and state."""
    if args.flow:
        if not args.store:
            raise UsageError("--flow needs --store, the URL of the store that holds the flow")
        store = open_store(args.store)
        snapshot = store.load(args.flow)
        provider, state = snapshot.provider, snapshot.state
    else:
        provider, state = args.provider, args.state
    if provider is None:
        raise UsageError(f"--state needs --provider, one of {list(provider_names())}")
    flow = provider_flow(provider)
    if args.svg:
        term.stdout.write(diagrams.svg(flow, current_state=state).decode("utf-8"))
        term.stdout.flush()
    else:
        term.stdout.write(diagrams.mermaid(flow, current_state=state))
        term.stdout.flush()
    return 0


def cmd_verify(args: argparse.Namespace, term: Terminal) -> int:
    """Check each named flow (every provider's by default); 1 if any rule is broken."""
    flows = [_flow_class(name) for name in args.flows] or list(diagrams.flows().values())
    problems = [problem for flow in flows for problem in verify.verify_flow(flow)]
    for problem in problems:
        term.say(str(problem))
    if problems:
        term.say(f"{len(problems)} problem(s) in {len(flows)} flow(s)")
        return 1
    for flow in flows:
        term.say(verify.summary(flow))
    term.say(
        f"{len(flows)} flow(s) verified: every state reachable; cancel and expire lead to "
        "Failed from every live state; Completed entered only on 'completed'; a row for "
        "every outcome a handler declares, and no row none does; a way forward from every "
        "live state"
    )
    return 0


def _flow_class(name: str) -> type[Flow]:
    """A provider name, or ``module:Class`` for a flow of your own."""
    if ":" not in name:
        known = diagrams.flows()
        flow = known.get(name)
        if flow is None:
            raise UsageError(
                f"no provider {name!r}; name one of {sorted(known)} or a flow class as module:Class"
            )
        return flow
    module, _, attribute = name.partition(":")
    if not (module and attribute):
        raise UsageError(f"cannot load {name!r}: name a flow class as module:Class")
    try:  # imports (runs) the module named: an operator's command, as python -m would
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot load {name}: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, Flow) and hasattr(found, "machine")):
        raise UsageError(f"{name} is not a provider's mfa_fsm.Flow subclass (it has no machine)")
    return found


def cmd_purge(args: argparse.Namespace, term: Terminal) -> int:
    """Delete every expired record of the store at ``args.url`` (flows, or a ledger's)."""
    url: str = args.url
    if url.startswith(("redis://", "rediss://", "unix://")):
        # Every key is written with its TTL (deadline + margin): Redis deletes it itself.
        term.say("nothing to purge: Redis deletes each flow's key when its TTL ends")
        return 0
    if not url.startswith(("sqlite:", "postgresql")):
        raise UsageError(
            "purge takes a store URL: sqlite:///PATH, postgresql+psycopg://... or redis://... "
            "(a memory store lives inside its own process, which purges it)"
        )
    import sqlalchemy as sa  # noqa: PLC0415 - the sql extra

    from mfa_fsm.stores.sql import SqlStore  # noqa: PLC0415

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise UsageError(f"{url!r} is not a database URL (sqlite:///PATH, ...)") from None
    database = parsed.database or ""
    is_file = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if is_file and not parsed.query.get("uri") and not Path(database).is_file():
        # Connecting would create an empty database: a typo in a cron line must not pass.
        raise UsageError(f"no SQLite database at {database}; check the path in the URL")
    store = SqlStore(url, table=args.table)
    try:
        if not sa.inspect(store.engine).has_table(args.table):
            raise UsageError(
                f"the database has no table {args.table!r}; check the URL and --table "
                "(mfa_fsm creates it on first use, so nothing has been stored there)"
            )
        purged = store.purge_expired()
    except sa.exc.SQLAlchemyError as exc:
        raise UsageError(
            f"cannot read the database ({type(exc).__name__}); check the URL and that the "
            "server is up"
        ) from None
    finally:
        store.close()
    term.say(f"deleted {purged} expired record{'' if purged == 1 else 's'} from {args.table}")
    return 0


def open_store(url: str) -> FlowStore:
    """The store a URL names: ``memory``, ``sqlite:///...``, ``postgresql+psycopg://...`` or
    ``redis://...``. Raises UsageError for anything else."""
    if url == "memory":
        from mfa_fsm.stores.memory import MemoryStore  # noqa: PLC0415

        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        import redis  # noqa: PLC0415 - the redis extra, only when asked for

        from mfa_fsm.stores.redis import RedisStore  # noqa: PLC0415

        return RedisStore(redis.Redis.from_url(url))
    if url.startswith(("sqlite:", "postgresql")):
        from mfa_fsm.stores.sql import SqlStore  # noqa: PLC0415 - the sql extra

        return SqlStore(url)
    raise UsageError(
        "a store URL is memory, sqlite:///PATH, postgresql+psycopg://... or redis://..."
    )


#: ``--help`` text: plain words, no reST markup (the module docstring is for Sphinx).
DESCRIPTION = (
    "mfa-fsm: the web login demo, a terminal login, the IdP emulators, and the flow diagrams."
)


def _positive(text: str) -> float:
    """An argparse type: a number of seconds greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError("must be a number of seconds greater than 0")
    return value


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port from 0 to 65535")
    return value


def _add_settings(login: argparse.ArgumentParser) -> None:
    """One option per setting the providers declare (one option for a setting several
    providers share), its help saying whose it is."""
    declared: dict[str, list[tuple[str, Setting]]] = {}
    for flow in provider_flows().values():
        for setting in flow.settings:
            if setting.option is not None:  # a secret comes from the environment only
                declared.setdefault(setting.option, []).append((flow.label, setting))
    secrets = [
        f"{flow.label}: {s.help}" + (f" from ${s.env}, else" if s.env else "") + " asked for"
        for flow in provider_flows().values()
        for s in flow.settings
        if s.option is None
    ]
    if secrets:
        login.epilog = (
            "Secret settings have no option (a command line is visible to other users): "
            + "; ".join(secrets)
            + "."
        ).replace("%", "%%")
    for option, owners in declared.items():
        text = "; ".join(
            f"{label}: {s.help}" + (f" (or ${s.env})" if s.env else "") for label, s in owners
        )
        metavar = option.lstrip("-").upper().replace("-", "_")
        login.add_argument(
            option, dest=_dest(option), metavar=metavar, help=text.replace("%", "%%")
        )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mfa-fsm", description=DESCRIPTION)
    top.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log every transition to stderr (the same as --log-level info)",
    )
    top.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="write log lines of this level and above to stderr (default: none, so a "
        "terminal login shows only its walk-through)",
    )
    commands = top.add_subparsers(dest="command", required=True)
    emulators = ", ".join(flow.label for flow in _emulated().values())
    demo = commands.add_parser(
        "demo", help=f"the web login demo, with the IdP emulators ({emulators})".replace("%", "%%")
    )
    demo.add_argument("--host", default="127.0.0.1", help="loopback only: see the docs")
    demo.add_argument("--port", type=_port, default=8700)
    demo.add_argument("--store", help="store URL (default: SQLite in a temporary directory)")
    demo.add_argument("--sealed", action="store_true", help="keep flows in the cookie instead")
    demo.add_argument(
        "--framework",
        choices=("flask", "fastapi", "django"),
        default="flask",
        help="the web framework serving the pages (default: flask)",
    )
    demo.add_argument("--seconds", type=_positive, help="stop after SECONDS (for scripts)")
    demo.set_defaults(run=cmd_demo)
    login = commands.add_parser("login", help="log in from the terminal")
    names = provider_names()
    login.add_argument(
        "--provider",
        choices=names,
        default=names[0] if len(names) == 1 else None,
        help="the identity provider (required when several are installed)",
    )
    login.add_argument("--emulator", action="store_true", help="use a local IdP emulator")
    _add_settings(login)
    login.add_argument(
        "--client-ip",
        help="the user's IP address, for the IdP's risk rules (a provider whose "
        "configuration takes a fixed one)",
    )
    login.add_argument("--user", help="user id (asked for when missing)")
    login.add_argument(
        "--first-factor-checked-by",
        metavar="WHO",
        help="a first factor checked outside the IdP (EXTERNAL): you vouch that WHO (e.g. "
        "'ACME VPN password') has checked "
        "this user's first factor; without it the IdP must check a password",
    )
    login.add_argument(
        "--approve-after",
        type=_positive,
        metavar="SECONDS",
        help="with --emulator: approve a push automatically after SECONDS",
    )
    login.set_defaults(run=cmd_login)
    emulate = commands.add_parser("emulate", help="run the IdP emulators until Ctrl-C")
    emulate.add_argument("--host", default="127.0.0.1")
    for name in _emulated():
        emulate.add_argument(
            f"--{name.replace('_', '-')}-port",
            dest=f"port_{name}",
            type=_port,
            help="the emulator's port (default: its own)",
        )
    emulate.add_argument("--seconds", type=_positive, help="stop after SECONDS (for scripts)")
    emulate.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a throwaway CA and print its certificate file to trust",
    )
    emulate.set_defaults(run=cmd_emulate)
    draw = commands.add_parser("diagrams", help="write every flow's diagram to a folder")
    draw.add_argument("--out", default="diagrams")
    draw.add_argument("--check", action="store_true", help="fail if a diagram is stale")
    draw.add_argument("--flow", help="print this stored flow's diagram, its state marked")
    draw.add_argument("--store", help="with --flow: the store URL (as for demo --store)")
    draw.add_argument("--provider", choices=provider_names(), help="with --state")
    draw.add_argument("--state", help="print the provider's diagram with this state marked")
    draw.add_argument("--svg", action="store_true", help="print SVG (needs Graphviz) instead")
    draw.set_defaults(run=cmd_diagrams)
    check = commands.add_parser(
        "verify", help="check every flow's table against its handlers (no IdP needed)"
    )
    check.add_argument(
        "flows",
        nargs="*",
        metavar="FLOW",
        help="a provider name or module:Class of your own flow (default: every provider)",
    )
    check.set_defaults(run=cmd_verify)
    purge = commands.add_parser(
        "purge", help="delete a store's expired flows now (run it from cron)"
    )
    purge.add_argument("url", help="sqlite:///PATH, postgresql+psycopg://... or redis://...")
    purge.add_argument(
        "--table", default="mfa_fsm_flows", help="SQL table (a ledger's, e.g. mfa_fsm_ledger)"
    )
    purge.set_defaults(run=cmd_purge)
    return top


#: ``--log-level`` values, lowest first.
LOG_LEVELS = ("debug", "info", "warning", "error")


def _route_logs(level: str | None) -> None:
    """Where log lines go. The CLI is an application, so it (not the library) decides: by
    default nowhere, so a terminal login shows only its walk-through (a refused code, a
    resend inside its cooldown are said there, in words; their ``mfa_fsm.step_failed``
    warnings are for operators); with ``--log-level`` (or ``-v``: info, every transition and
    every demo request) that level and above, to stderr."""
    if level is None:
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
            logger_factory=structlog.ReturnLoggerFactory(),  # formats nothing, writes nothing
        )
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        return
    number = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    logging.getLogger("werkzeug").setLevel(number)


def main(
    argv: Sequence[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Run the command line; returns the exit status (0 ok, 1 login failed, 2 error)."""
    args = parser().parse_args(argv)
    term = Terminal(stdin or sys.stdin, stdout or sys.stdout)
    _route_logs(args.log_level or ("info" if args.verbose else None))
    try:
        status: int = args.run(args, term)
    except MfaError as exc:
        term.say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        term.say("\ninterrupted")
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
