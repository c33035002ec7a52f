"""What every part of the servicer shares (see `servicer.py` for the scopes and rules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.auth import current_principal
from shared.errors import Violations

from ..app.unit_of_work import FastWork, Request, UnitOfWork, Work
from ..domain import validation
from ..store import Store
from .checks import need


class Base:
    """What every part of the servicer shares: the store (reads), the unit of work (writes)
    and the translation of a mutating call into one `Request`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.uow = UnitOfWork(store)

    async def _mutate(self, method: str, request: Any, check: Violations, work: Work,
                      response_type: Any, to_response: Callable[[Any], Any],
                      fast: FastWork | None = None) -> Any:
        """Validate request_id, then run the use case `work(tx)` once per key (`fast(call)`:
        its one-statement form, PostgreSQL); a retry gets the first answer."""
        need(check, validation.request_id(request.request_id), "request_id")
        check.raise_if_any()
        payload = type(request)()
        payload.CopyFrom(request)
        payload.request_id = ""
        answer = await self.uow.run(
            Request(current_principal(), method, request.request_id,
                    payload.SerializeToString(deterministic=True),
                    lambda result: to_response(result).SerializeToString(deterministic=True)),
            work, fast)
        return response_type.FromString(answer)
