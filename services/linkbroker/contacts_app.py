"""The ground-station contacts' use cases: each mutation is one transaction with its
idempotency key (:meth:`ContactStore.mutate`), its rules from :mod:`.contacts`, its locks
in the store's order. The servicer (:mod:`.contacts_api`) validates and translates; it
hands each use case the request's fingerprint and how to encode the answer (the first
answer is what a retry gets, byte for byte), and, for a reservation, how to ask the orbit
service for passes. Errors are :mod:`shared.errors` (the servicer's interceptor maps them).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from shared.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from shared.wire import timestamp_to_unix

from . import contacts as rules
from .contact_store import ContactStore, new_contact_id
from .contacts import State
from .records import ContactRecord, ProfileRecord, StationRecord, utc_instant

__all__ = ["ContactBookings", "MutationKey", "Passes"]

#: (tenant, request_id, method, fingerprint) of a mutating call.
MutationKey = tuple[str, str, str, str]
#: ``passes(station, mask_deg, min_duration_s, start_s, end_s, window_field)``: the orbit
#: service's passes (PassPrediction messages) of the requested spacecraft over `station`.
Passes = Callable[[StationRecord, float, float, float, float, str], Awaitable[list[Any]]]


def refused(error: rules.RuleViolation) -> Exception:
    """The canonical error for a rule the domain refused."""
    if error.kind == "argument":
        return InvalidArgument(error.message, reason=error.reason,
                               violations=[(error.field or "request", error.message)])
    return FailedPrecondition(error.message, reason=error.reason, metadata=error.metadata)


class ContactBookings:
    """Stations, profiles and contacts over a :class:`ContactStore`."""

    def __init__(self, store: ContactStore, *, clock: Callable[[], float] = time.time,
                 lead_time_s: float = rules.DEFAULT_LEAD_TIME_S):
        self.store = store
        self.clock = clock
        self.lead_time_s = lead_time_s

    async def _mutate(self, key: MutationKey, work: Callable[[Any, float], Awaitable[Any]],
                      encode: Callable[[Any], bytes]) -> bytes:
        """Run `work(session, now)` once per key; the encoded first answer."""
        try:
            return await self.store.mutate(*key, work, encode)
        except rules.RuleViolation as error:
            raise refused(error) from None

    # ------------------------------------------------------------------ lookups
    async def station(self, station_id: str, field: str = "ground_station") -> StationRecord:
        row = await self.store.get_station(station_id)
        if row is None:
            raise NotFound(f"groundStations/{station_id} not found",
                           reason="GROUND_STATION_NOT_FOUND",
                           violations=[(field, f"no ground station {station_id!r}")])
        return row

    async def profile(self, tenant: str, profile_id: str, field: str = "contact_profile"
                      ) -> ProfileRecord:
        row = await self.store.get_profile(tenant, profile_id)
        if row is None:
            raise NotFound(f"contactProfiles/{profile_id} not found",
                           reason="CONTACT_PROFILE_NOT_FOUND",
                           violations=[(field, f"no contact profile {profile_id!r}")])
        return row

    # ------------------------------------------------------------------ profiles
    async def create_profile(self, key: MutationKey, values: dict[str, Any],
                             encode: Callable[[ProfileRecord], bytes]) -> bytes:
        tenant = key[0]

        async def work(session: Any, now: float) -> ProfileRecord:
            row = ProfileRecord(tenant=tenant, create_time=utc_instant(now), **values)
            if not await self.store.insert_profile(session, row):
                raise AlreadyExists(
                    f"contactProfiles/{row.id} already exists",
                    reason="CONTACT_PROFILE_ALREADY_EXISTS",
                    violations=[("contact_profile_id", "is already used")])
            return row

        return await self._mutate(key, work, encode)

    async def delete_profile(self, key: MutationKey, profile_id: str,
                             encode: Callable[[ProfileRecord], bytes]) -> bytes:
        tenant = key[0]

        async def work(session: Any, now: float) -> ProfileRecord:
            row = await self.store.profile_in(session, tenant, profile_id, lock="update")
            if row is None:
                raise NotFound(f"contactProfiles/{profile_id} not found",
                               reason="CONTACT_PROFILE_NOT_FOUND",
                               violations=[("name", f"no contact profile {profile_id!r}")])
            in_use = await self.store.profile_in_use(session, tenant, profile_id, now)
            if in_use:
                raise FailedPrecondition(
                    f"{in_use} scheduled contact(s) use contactProfiles/{profile_id}; cancel "
                    "them or wait until they end", reason="PROFILE_IN_USE",
                    metadata={"scheduled_contacts": str(in_use)})
            await self.store.delete_profile(session, tenant, profile_id)
            return row

        return await self._mutate(key, work, encode)

    # ------------------------------------------------------------------ contacts
    async def reserve(self, key: MutationKey, *, number: int, station_id: str,
                      profile_id: str, start_s: float, end_s: float, passes: Passes,
                      encode: Callable[[ContactRecord], bytes]) -> bytes:
        """Reserve a contact of satellite `number` on the station in ``[start_s, end_s]``:
        a retry gets the first answer before any rule is checked again (the lead time may
        have passed since); then the rules, the pass that covers the contact, and the
        antenna under the station's lock."""
        tenant = key[0]
        first = await self.store.replay(*key)
        if first is not None:
            return first
        station = await self.station(station_id)
        profile = await self.profile(tenant, profile_id)
        # The row keeps whole microseconds: check the rules on exactly what it will keep,
        # so a contact read back never lands on the other side of a guard-gap boundary.
        start_time, end_time = utc_instant(start_s), utc_instant(end_s)
        start_s, end_s = start_time.timestamp(), end_time.timestamp()
        now = self.clock()
        problems = rules.reservation_problems(start_s, end_s, now, profile.min_duration_s,
                                              self.lead_time_s)
        if problems:
            raise InvalidArgument(
                "the reservation is invalid: " + "; ".join(f"{f}: {d}" for f, d, _ in problems),
                reason=problems[0][2], violations=[(f, d) for f, d, _ in problems])
        mask = max(station.min_elevation_deg, profile.min_elevation_deg)
        tolerance = rules.PASS_TOLERANCE_S
        found = await passes(station, mask, profile.min_duration_s - 2 * tolerance, start_s,
                             end_s, "start_time")
        rise = np.array([timestamp_to_unix(p.rise_time) for p in found], float)
        sets = np.array([timestamp_to_unix(p.set_time) for p in found], float)
        hit = rules.covering_pass(rise, sets, start_s, end_s, tolerance)
        if hit is None:
            description = (f"satellites/{number} is not above {mask:g} deg at "
                           f"groundStations/{station_id} for the whole contact; take the "
                           "times of a pass from ListAvailableContacts")
            raise InvalidArgument(description, reason="NOT_IN_PASS",
                                  violations=[("start_time", description),
                                              ("end_time", description)])
        chosen = found[hit]
        used = (profile.min_elevation_deg, profile.min_duration_s, profile.guard_gap_s)

        async def work(session: Any, now: float) -> ContactRecord:
            locked = await self.store.profile_in(session, tenant, profile_id, lock="share")
            if locked is None:
                raise NotFound(f"contactProfiles/{profile_id} not found",
                               reason="CONTACT_PROFILE_NOT_FOUND",
                               violations=[("contact_profile", "was deleted")])
            if (locked.min_elevation_deg, locked.min_duration_s, locked.guard_gap_s) != used:
                raise Aborted("the contact profile changed during the reservation; retry",
                              reason="PROFILE_CHANGED")
            station_row = await self.store.lock_station(session, station_id)
            bookings = await self.store.bookings(session, station_id, start_s, end_s)
            antenna = rules.assign_antenna(start_s, end_s, profile.guard_gap_s, bookings,
                                           station_row.antennas)
            row = ContactRecord(
                id=new_contact_id(), tenant=tenant, spacecraft=number,
                ground_station=station_id, profile=profile_id, antenna=antenna,
                start_time=start_time, end_time=end_time, max_elevation_deg=chosen.max_elevation_deg,
                start_azimuth_deg=chosen.rise_azimuth_deg,
                end_azimuth_deg=chosen.set_azimuth_deg, min_elevation_deg=mask,
                guard_gap_s=profile.guard_gap_s, state=State.SCHEDULED.name,
                state_reason="", create_time=utc_instant(now),
                update_time=utc_instant(now))
            await self.store.insert_contact(session, row)
            return row

        return await self._mutate(key, work, encode)

    async def change_state(self, key: MutationKey, contact_id: str, name: str,
                           scope: str | None,
                           rule: Callable[[State, ContactRecord, float], None],
                           target: Callable[[State], State], reason: str,
                           encode: Callable[[tuple[ContactRecord, float]], bytes]) -> bytes:
        """Lock the contact (of `scope`, or any tenant's when None), check
        ``rule(current, row, now)`` and store ``target(current)``; `encode` gets the
        changed contact and the time of the change."""

        async def work(session: Any, now: float) -> tuple[ContactRecord, float]:
            row = await self.store.contact_in(session, contact_id, scope, lock=True)
            if row is None:
                raise NotFound(f"{name} not found", reason="CONTACT_NOT_FOUND",
                               violations=[("name", f"no contact {contact_id!r}")])
            current = rules.effective_state(State[row.state], row.end_s, now)
            rule(current, row, now)
            new_state = target(current)
            await self.store.set_state(session, contact_id, new_state, reason, now)
            return dataclasses.replace(row, state=new_state.name, state_reason=reason,
                                       update_time=utc_instant(now)), now

        return await self._mutate(key, work, encode)
