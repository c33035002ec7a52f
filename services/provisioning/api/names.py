"""Resource names and cursors as requests carry them: parsing, with the field that is
wrong; page tokens and the event feed's cursors."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from shared.errors import InvalidArgument, Violations
from shared.paging import decode_token, page_size

_ID = r"([a-z0-9][a-z0-9-]{0,62})"
NAMES = {
    "partner": re.compile(rf"^partners/{_ID}$"),
    "referral": re.compile(rf"^referrals/{_ID}$"),
    "customer": re.compile(rf"^customers/{_ID}$"),
    "plan": re.compile(rf"^plans/{_ID}$"),
    "subscription": re.compile(rf"^customers/{_ID}/subscriptions/{_ID}$"),
    "operation": re.compile(rf"^customers/{_ID}/subscriptions/{_ID}/operations/{_ID}$"),
    "terminal": re.compile(rf"^customers/{_ID}/terminals/{_ID}$"),
}
PATTERNS = {
    "partner": "partners/{partner}", "referral": "referrals/{referral}",
    "customer": "customers/{customer}", "plan": "plans/{plan}",
    "subscription": "customers/{customer}/subscriptions/{subscription}",
    "operation": "customers/{customer}/subscriptions/{subscription}/operations/{operation}",
    "terminal": "customers/{customer}/terminals/{terminal}",
}



def parse(value: str, kind: str, path: str, check: Violations | None = None
          ) -> tuple[str, ...] | None:
    """The ids in a resource name, or a violation naming the field."""
    match = NAMES[kind].match(value or "")
    if match:
        return match.groups()
    description = ("is required" if not value else
                   f"{value[:100]!r} is not a {kind} name ({PATTERNS[kind]})")
    if check is None:
        raise InvalidArgument(f"{path} {description}", violations=[(path, description)])
    check.add(path, description)
    return None



def page_args(request: Any, scope: str, check: Violations | None = None) -> tuple[Any, int]:
    own = check if check is not None else Violations()  # (an empty one is falsy)
    size = page_size(request.page_size, own)
    after = None
    try:
        after = decode_token(request.page_token, scope)
    except InvalidArgument as error:
        own.extend((v.field, v.description) for v in error.violations)
    if check is None:
        own.raise_if_any()
    return after, size



def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"ev:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, seq = raw.partition(":")
        if prefix != "ev" or not seq.isdigit():
            raise ValueError
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("start_cursor is not a cursor from this feed",
                              violations=[("start_cursor",
                                           "is not an event cursor from this feed")]) from None


