"""The ``mfa-fsm`` command: a terminal login, the emulators on their own, and the diagrams.

::

    mfa-fsm login --emulator                 walk through an Entrust login against the emulator
    mfa-fsm login --base-url URL --application-id ID --user jsmith   ... against a real tenant
    mfa-fsm emulate                          run the IdP emulators until Ctrl-C
    mfa-fsm diagrams [--check]               write (or check) diagrams/ from the machines
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import structlog

from mfa_fsm import diagrams
from mfa_fsm.core.driver import wait_while_pending
from mfa_fsm.core.errors import MfaError, UsageError
from mfa_fsm.core.flow import Flow
from mfa_fsm.core.snapshot import FlowView
from mfa_fsm.entrust import EntrustConfig, EntrustFlow
from mfa_fsm.testing import CyberArkEmulator, EntrustEmulator, control

SPINNER = "|/-\\"


class Terminal:
    """Prompts and output; secrets are read without echo when a terminal is attached."""

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout

    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def ask(self, prompt: str, *, secret: bool = False) -> str:
        if secret and self.stdin.isatty():
            return getpass.getpass(prompt, stream=self.stdout)
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise UsageError("input ended before the login finished")
        return line.rstrip("\n")

    def choose(self, prompt: str, options: Sequence[str]) -> int:
        for number, option in enumerate(options, 1):
            self.say(f"  {number}. {option}")
        while True:
            answer = self.ask(f"{prompt} [1-{len(options)}]: ").strip()
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                return int(answer) - 1
            self.say(f"Please type a number from 1 to {len(options)}.")


def walk(flow: Flow, term: Terminal, hint: Callable[[FlowView], None] | None = None) -> FlowView:
    """Drive ``flow`` to its end, asking the person at ``term`` for each input."""
    steps = {
        "AwaitingFirstFactor": _first_factor,
        "AwaitingSecondFactor": _pick_second_factor,
        "SecondFactorSelected": _answer,
        "OobPending": _wait,
    }
    view = flow.view()
    while not view.is_final:
        if hint is not None:
            hint(view)
        view = steps[view.state](flow, view, term)
    return view


def _first_factor(flow: Flow, view: FlowView, term: Terminal) -> FlowView:
    if view.challenge is not None and view.challenge.kind == "password":
        prefix = "Wrong password. " if view.challenge.rejected else ""
        return flow.send(
            "submit_first_factor", password=term.ask(f"{prefix}Password: ", secret=True)
        )
    term.say("First factor checked by the application; asking the IdP what next.")
    return flow.send("submit_first_factor")


def _pick_second_factor(flow: Flow, view: FlowView, term: Terminal) -> FlowView:
    usable = [c for c in view.choices if c.supported]
    if not usable:
        raise UsageError("the IdP offers no second factor mfa_fsm can drive")
    choice = usable[term.choose("Second factor", [c.label for c in usable])]
    delivery = None
    if len(choice.deliveries) > 1:
        delivery = choice.deliveries[term.choose("Send the code by", choice.deliveries)]
    return flow.send("select_second_factor", factor=choice.id, delivery=delivery)


def _answer(flow: Flow, view: FlowView, term: Terminal) -> FlowView:
    challenge = view.challenge
    if challenge is None:
        raise UsageError("the flow awaits an answer but shows no challenge")
    if challenge.rejected:
        left = challenge.attempts_left
        term.say("That was not right." + (f" {left} attempt(s) left." if left else ""))
    if challenge.questions:
        answers = [term.ask(f"{question} ", secret=True) for question in challenge.questions]
        return flow.send("submit_response", answers=answers)
    return flow.send("submit_response", response=term.ask(f"{challenge.prompt}: "))


def _wait(flow: Flow, view: FlowView, term: Terminal) -> FlowView:
    if view.challenge is not None and view.challenge.number_to_match:
        term.say(f"Select {view.challenge.number_to_match} on your device.")
    view = wait_while_pending(flow, on_tick=_spinner(term, flow))
    term.stdout.write("\r" + " " * 78 + "\r")
    return view


def _spinner(term: Terminal, flow: Flow) -> Callable[[FlowView], None]:
    started = flow.clock()
    ticks = iter(range(sys.maxsize))

    def tick(view: FlowView) -> None:
        now = flow.clock()
        frame = SPINNER[next(ticks) % len(SPINNER)]
        left = max(view.deadline - now, 0)
        term.stdout.write(
            f"\r{frame} waiting for approval on your device: {now - started:3.0f}s elapsed, "
            f"expires in {left:3.0f}s "
        )
        term.stdout.flush()

    return tick


@contextlib.contextmanager
def _entrust_target(args: argparse.Namespace, term: Terminal) -> Iterator[EntrustConfig]:
    if not args.emulator:
        base_url = args.base_url or os.environ.get("MFA_FSM_ENTRUST_URL")
        application_id = args.application_id or os.environ.get("MFA_FSM_ENTRUST_APP_ID")
        if not base_url or not application_id:
            raise UsageError(
                "give --emulator, or --base-url and --application-id (or MFA_FSM_ENTRUST_URL "
                "and MFA_FSM_ENTRUST_APP_ID) for a real tenant"
            )
        yield EntrustConfig(
            base_url=base_url, application_id=application_id, client_ip=args.client_ip
        )
        return
    with EntrustEmulator() as emulator:
        term.say(
            f"Entrust IDaaS emulator at {emulator.base_url} (demo users: "
            + ", ".join(sorted(emulator.users))
            + ")"
        )
        yield EntrustConfig(
            base_url=emulator.base_url,
            application_id=emulator.application_id,
            client_ip=args.client_ip,
        )


def _emulator_hint(
    args: argparse.Namespace, config: EntrustConfig, term: Terminal, user: str
) -> Callable[[FlowView], None] | None:
    if not args.emulator:
        return None

    def hint(view: FlowView) -> None:
        if view.state == "SecondFactorSelected" and view.challenge and view.challenge.kind == "otp":
            term.say(f"[emulator] the code sent is {control.entrust_otp(config.base_url, user)}")
        elif (
            view.state == "SecondFactorSelected"
            and view.challenge
            and view.challenge.kind == "token"
        ):
            term.say(f"[emulator] the token shows {control.entrust_answer(config.base_url, user)}")
        elif view.state == "OobPending":
            url = f"{config.base_url}/_emulator/push/{user}/approve"
            if args.approve_after is not None:
                term.say(f"[emulator] approving the push in {args.approve_after:g}s")
                timer = threading.Timer(args.approve_after, control.post, args=(url,))
                timer.daemon = True
                timer.start()
            else:
                term.say(f"[emulator] approve from another terminal: curl -X POST {url}")

    return hint


def cmd_login(args: argparse.Namespace, term: Terminal) -> int:
    with _entrust_target(args, term) as config:
        user = args.user or term.ask("User id: ").strip()
        flow = EntrustFlow.start(config=config, user_id=user)
        view = walk(flow, term, _emulator_hint(args, config, term, user))
    if view.state == "Completed" and view.result is not None:
        name = view.result.display_name or view.result.user_id
        term.say(f"Authenticated as {name} (IdP token of {len(view.result.token)} characters).")
        return 0
    detail = f": {view.failure_detail}" if view.failure_detail else ""
    term.say(f"Login failed ({view.failure}){detail}.")
    return 1


def cmd_emulate(args: argparse.Namespace, term: Terminal) -> int:
    with (
        EntrustEmulator(host=args.host, port=args.entrust_port) as entrust,
        CyberArkEmulator(host=args.host, port=args.cyberark_port) as cyberark,
    ):
        term.say(
            f"Entrust IDaaS emulator:     {entrust.base_url}  application id "
            f"{entrust.application_id}"
        )
        term.say(f"CyberArk Identity emulator: {cyberark.base_url}")
        term.say(
            "Demo users and control routes: see `pydoc mfa_fsm.testing.entrust` and "
            "`pydoc mfa_fsm.testing.cyberark`. Ctrl-C stops."
        )
        if args.seconds is not None:
            time.sleep(args.seconds)
            return 0
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


def cmd_diagrams(args: argparse.Namespace, term: Terminal) -> int:
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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mfa-fsm", description=__doc__.splitlines()[0])
    top.add_argument("-v", "--verbose", action="store_true", help="log every transition")
    commands = top.add_subparsers(dest="command", required=True)
    login = commands.add_parser("login", help="log in from the terminal (Entrust IDaaS)")
    login.add_argument("--emulator", action="store_true", help="use a local Entrust emulator")
    login.add_argument("--base-url", help="tenant URL, e.g. https://acme.us.trustedauth.com")
    login.add_argument("--application-id", help="Authentication API application id")
    login.add_argument("--client-ip", help="the user's IP, for risk rules")
    login.add_argument("--user", help="user id (asked for when missing)")
    login.add_argument(
        "--approve-after",
        type=float,
        metavar="SECONDS",
        help="with --emulator: approve a push automatically after SECONDS",
    )
    login.set_defaults(run=cmd_login)
    emulate = commands.add_parser("emulate", help="run the IdP emulators until Ctrl-C")
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.add_argument("--entrust-port", type=int, default=8701)
    emulate.add_argument("--cyberark-port", type=int, default=8702)
    emulate.add_argument("--seconds", type=float, help="stop after SECONDS (for scripts)")
    emulate.set_defaults(run=cmd_emulate)
    draw = commands.add_parser("diagrams", help="write every flow's diagram to a folder")
    draw.add_argument("--out", default="diagrams")
    draw.add_argument("--check", action="store_true", help="fail if a diagram is stale")
    draw.set_defaults(run=cmd_diagrams)
    return top


def main(
    argv: Sequence[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Run the command line; returns the exit status (0 ok, 1 login failed, 2 error)."""
    args = parser().parse_args(argv)
    term = Terminal(stdin or sys.stdin, stdout or sys.stdout)
    # The CLI is an application, so it (not the library) decides where log lines go:
    # warnings to stderr by default, every transition with --verbose.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if args.verbose else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
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
