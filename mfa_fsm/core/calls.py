"""Calls into the public API that Python itself would refuse, refused as mfa_fsm errors.

Python answers a wrong keyword, a missing argument or too many positional ones with a bare
``TypeError``, and a number of the wrong type with whatever the first comparison raises.
The public entry points (the engines, ``Flow.start`` / ``restore`` / ``send``, the stores,
the web blueprint factory) promise an :class:`~mfa_fsm.core.errors.MfaError` for every
mistake in a call, so they are wrapped with :func:`checked` and check their numbers with
:func:`is_seconds` / :func:`is_count`. No library offers "bind errors as my own exception type";
the wrapper is a few lines over :meth:`inspect.Signature.bind`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from mfa_fsm.core.errors import UsageError

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def checked(func: Callable[P, R]) -> Callable[P, R]:
    """``func``, raising :class:`UsageError` instead of ``TypeError`` when the call does not
    match its signature (an unknown keyword, a missing argument, too many positional ones).

    The check costs nothing on a good call: the signature is bound only after a TypeError,
    and only a call that does not bind is turned into UsageError (a TypeError raised inside
    ``func`` is raised as it was). A call that does not bind never ran ``func``'s body, so
    nothing was changed.
    """
    signature = inspect.signature(func)
    name = func.__qualname__.removesuffix(".__init__")

    def refused(args: tuple[Any, ...], kwargs: dict[str, Any]) -> UsageError | None:
        problem = call_problem(signature, args, kwargs)
        if problem is None:
            return None
        return UsageError(f"{name}() {problem}; see help({name}) for the arguments it takes")

    if inspect.iscoroutinefunction(func):
        # A coroutine function stays one (inspect.iscoroutinefunction, which frameworks and
        # the engines ask); a call that does not bind raises UsageError when awaited.
        @functools.wraps(func)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            try:
                coroutine = func(*args, **kwargs)
            except TypeError:
                error = refused(args, kwargs)
                if error is None:
                    raise
                raise error from None
            return await coroutine

        return awaited  # type: ignore[return-value]  # the same signature, awaited

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except TypeError:
            error = refused(args, kwargs)
            if error is None:
                raise
            raise error from None

    return wrapper


def checked_init(cls: type[T]) -> type[T]:
    """``cls`` (an attrs class: a provider configuration) with its generated ``__init__``
    wrapped by :func:`checked`, so a misspelt or missing field is a UsageError."""
    cls.__init__ = checked(cls.__init__)  # type: ignore[method-assign]
    return cls


def call_problem(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """Why ``args`` and ``kwargs`` do not bind to ``signature`` (None when they do)."""
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        # Only parameter names (the caller's or the function's) are quoted, never a value.
        return str(exc)[:200]
    return None


def is_seconds(value: object, *, zero: bool = False) -> bool:
    """Whether ``value`` is a duration in seconds: an int or float above 0 (at least 0 with
    ``zero``); a bool, a string or NaN is not. Callers raise their own UsageError."""
    if type(value) is not int and type(value) is not float:
        return False
    return value >= 0 if zero else value > 0


def is_count(value: object, *, least: int) -> bool:
    """Whether ``value`` is an int (not a bool) of at least ``least``."""
    return type(value) is int and value >= least
