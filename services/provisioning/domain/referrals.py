"""Co-sell referrals (Partner Center): each engagement is two records, the creator's
(OUTBOUND) and the counterparty's (INBOUND), whose status moves are mirrored."""

from __future__ import annotations

from enum import StrEnum

from shared.errors import FailedPrecondition, InvalidArgument


class ReferralStatus(StrEnum):
    NEW = "NEW"
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


class Substatus(StrEnum):
    PENDING = "PENDING"
    RECEIVED = "RECEIVED"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    WON = "WON"
    LOST = "LOST"
    EXPIRED = "EXPIRED"


class Direction(StrEnum):
    OUTBOUND = "OUTBOUND"
    INBOUND = "INBOUND"


NEW, ACTIVE_STATUS, CLOSED = ReferralStatus.NEW, ReferralStatus.ACTIVE, ReferralStatus.CLOSED
R_PENDING, RECEIVED, ACCEPTED = Substatus.PENDING, Substatus.RECEIVED, Substatus.ACCEPTED
DECLINED, WON, LOST, EXPIRED = Substatus.DECLINED, Substatus.WON, Substatus.LOST, Substatus.EXPIRED
OUTBOUND, INBOUND = Direction.OUTBOUND, Direction.INBOUND

SUBSTATUSES: dict[str, frozenset[str]] = {
    NEW: frozenset({R_PENDING, RECEIVED}),
    ACTIVE_STATUS: frozenset({ACCEPTED}),
    CLOSED: frozenset({DECLINED, WON, LOST, EXPIRED}),
}

#: What a partner may do to its own record, by direction and current (status, substatus).
REFERRAL_MOVES: dict[tuple[str, tuple[str, str]], frozenset[tuple[str, str]]] = {
    # The creator waits for the other side; it can withdraw (lost) or let it expire.
    (OUTBOUND, (NEW, R_PENDING)): frozenset({(CLOSED, LOST), (CLOSED, EXPIRED)}),
    # The receiver accepts or declines.
    (INBOUND, (NEW, RECEIVED)): frozenset(
        {(ACTIVE_STATUS, ACCEPTED), (CLOSED, DECLINED), (CLOSED, EXPIRED)}),
    (OUTBOUND, (ACTIVE_STATUS, ACCEPTED)): frozenset(
        {(CLOSED, WON), (CLOSED, LOST), (CLOSED, EXPIRED)}),
    (INBOUND, (ACTIVE_STATUS, ACCEPTED)): frozenset(
        {(CLOSED, WON), (CLOSED, LOST), (CLOSED, EXPIRED)}),
}

#: Every (from, to) pair a referral record may take, moves and mirrored moves alike.
REFERRAL_EDGES = frozenset(
    {(start, end) for (_, start), ends in REFERRAL_MOVES.items() for end in ends}
    | {((NEW, R_PENDING), (ACTIVE_STATUS, ACCEPTED)), ((NEW, R_PENDING), (CLOSED, DECLINED)),
       ((NEW, RECEIVED), (CLOSED, LOST))})


def referral_next(direction: str, current: tuple[str, str], wanted: tuple[str, str],
                  resource: str) -> tuple[str, str]:
    """Validate a partner's own status change; FAILED_PRECONDITION names the current state."""
    status, substatus = wanted
    if substatus not in SUBSTATUSES.get(status, ()):
        raise InvalidArgument(
            f"substatus {substatus} does not belong to status {status}",
            violations=[("referral.substatus",
                         f"must be one of {', '.join(sorted(SUBSTATUSES.get(status, ())))} "
                         f"for status {status}")])
    allowed = REFERRAL_MOVES.get((direction, current), frozenset())
    if wanted not in allowed:
        state = "/".join(current)
        raise FailedPrecondition(
            f"cannot move {direction.lower()} {resource} from {state} to {'/'.join(wanted)}"
            + (f" (allowed: {', '.join('/'.join(m) for m in sorted(allowed))})" if allowed
               else " (it is final or awaits the other partner)"),
            reason="INVALID_STATE_TRANSITION",
            metadata={"resource": resource, "current_state": state,
                      "requested_state": "/".join(wanted)})
    return wanted


def referral_mirror(counterpart: tuple[str, str], new: tuple[str, str]) -> tuple[str, str] | None:
    """The counterparty record's new state after one side moved to `new` (None: unchanged)."""
    if counterpart[0] == CLOSED:
        return None
    return new


def check_open(status: str, substatus: str, changes: set[str], moves: bool,
               resource: str) -> None:
    """A closed referral takes only a change of its notes."""
    if status == CLOSED and (moves or changes - {"notes"}):
        raise FailedPrecondition(
            f"{resource} is {status}/{substatus}: only notes can change",
            reason="REFERRAL_CLOSED",
            metadata={"resource": resource, "current_state": f"{status}/{substatus}"})


def check_won(status: str, substatus: str, resource: str) -> None:
    """A customer is created only from a CLOSED/WON referral."""
    if (status, substatus) != (CLOSED, WON):
        raise FailedPrecondition(
            f"{resource} is {status}/{substatus}; a customer can only be created from a "
            "CLOSED/WON referral", reason="REFERRAL_NOT_WON",
            metadata={"resource": resource, "current_state": f"{status}/{substatus}"})


def sourcing_partner(direction: str, owner_id: str, counterparty_id: str) -> str:
    """Attribution: the partner who sourced the deal is the outbound side's owner."""
    return owner_id if direction == OUTBOUND else counterparty_id
