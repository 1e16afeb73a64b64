"""The one outcome vocabulary every provider's handlers speak.

A handler turns what the IdP said into one of these outcomes; the provider's table maps
(state, event, outcome) to the next state. The names follow the shared state vocabulary
(``../DESIGN``: ``AwaitingFirstFactor`` ... ``Failed``), so every provider's diagram reads
alike: an outcome is named after what is now due, and in every shipped flow it leads to the
state of the same meaning:

=====================  =======================  ==========================================
outcome                usual target             what the IdP said
=====================  =======================  ==========================================
``first_factor_due``   AwaitingFirstFactor      a (new) first challenge is due: CyberArk's
                                                first mechanism chosen, or a ``NewPackage``
``second_factor_due``  AwaitingSecondFactor     the user picks an authenticator (Entrust
                                                token for a second factor, CyberArk several
                                                mechanisms, Duo ``auth``)
``response_due``       SecondFactorSelected     a challenge was issued; a typed answer is due
``oob_pending``        OobPending               an out-of-band challenge started, or is
                                                still running
``rejected``           the same state           a wrong answer; another try is allowed
``completed``          Completed                the IdP's success: the only way in
``failed``             Failed                   the IdP ended the login; *why* is the
                                                snapshot's ``failure`` (``locked``,
                                                ``denied``, ``rejected``, ``expired``,
                                                ``idp_error``)
``cancelled``          Failed                   the caller's ``cancel``
``expired``            Failed                   a deadline passed, or the IdP no longer
                                                holds the login
=====================  =======================  ==========================================

The failure *reason* is deliberately not an outcome: one ``failed`` row per (state, event)
keeps the tables short, and the reason still travels in the snapshot and the view.
"""

from __future__ import annotations

import enum


class OutcomeKind(enum.StrEnum):
    """What one step's IdP exchange meant, in the words every provider's table uses."""

    FIRST_FACTOR_DUE = "first_factor_due"
    SECOND_FACTOR_DUE = "second_factor_due"
    RESPONSE_DUE = "response_due"
    OOB_PENDING = "oob_pending"
    REJECTED = "rejected"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# The members as plain names, for tables and handlers: ``rows(S, {COMPLETED: Completed})``.
FIRST_FACTOR_DUE = OutcomeKind.FIRST_FACTOR_DUE
SECOND_FACTOR_DUE = OutcomeKind.SECOND_FACTOR_DUE
RESPONSE_DUE = OutcomeKind.RESPONSE_DUE
OOB_PENDING = OutcomeKind.OOB_PENDING
REJECTED = OutcomeKind.REJECTED
COMPLETED = OutcomeKind.COMPLETED
FAILED = OutcomeKind.FAILED
CANCELLED = OutcomeKind.CANCELLED
EXPIRED = OutcomeKind.EXPIRED

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "EXPIRED",
    "FAILED",
    "FIRST_FACTOR_DUE",
    "OOB_PENDING",
    "REJECTED",
    "RESPONSE_DUE",
    "SECOND_FACTOR_DUE",
    "OutcomeKind",
]
