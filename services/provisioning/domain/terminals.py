"""Terminals: the user terminals a subscription covers, their states and moves."""

from __future__ import annotations

from enum import StrEnum

from shared.errors import FailedPrecondition


class TerminalState(StrEnum):
    REGISTERED = "REGISTERED"
    PROVISIONED = "PROVISIONED"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DECOMMISSIONED = "DECOMMISSIONED"


REGISTERED = TerminalState.REGISTERED
PROVISIONED = TerminalState.PROVISIONED
ACTIVE = TerminalState.ACTIVE
T_SUSPENDED = TerminalState.SUSPENDED
DECOMMISSIONED = TerminalState.DECOMMISSIONED
TERMINAL_STATES = tuple(TerminalState)

TERMINAL_ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "provision": (frozenset({REGISTERED}), PROVISIONED),
    "activate": (frozenset({PROVISIONED, T_SUSPENDED}), ACTIVE),
    "suspend": (frozenset({ACTIVE}), T_SUSPENDED),
    "decommission": (frozenset({REGISTERED, PROVISIONED, ACTIVE, T_SUSPENDED}), DECOMMISSIONED),
}
TERMINAL_EDGES = frozenset(
    (start, end) for starts, end in TERMINAL_ACTIONS.values() for start in starts)


def terminal_next(state: str, action: str, resource: str) -> TerminalState:
    starts, end = TERMINAL_ACTIONS[action]
    if state not in starts:
        raise FailedPrecondition(
            f"cannot {action} {resource}: it is {state}"
            f" (allowed from {', '.join(sorted(starts))})",
            reason="INVALID_STATE_TRANSITION",
            metadata={"resource": resource, "current_state": state, "action": action},
        )
    return TerminalState(end)


def counts_against_quantity(terminal_state: str) -> bool:
    return terminal_state != DECOMMISSIONED


def count_change(state: str, new_state: str) -> int:
    """How a move changes its subscription's terminal count (-1 when it stops counting)."""
    return int(counts_against_quantity(new_state)) - int(counts_against_quantity(state))
