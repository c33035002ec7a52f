"""The ground-station contacts servicer: proto <-> domain, validation, scopes, errors.

The rules live in :mod:`services.linkbroker.contacts`, the queries and transactions in
:mod:`services.linkbroker.contact_store`; passes come from the orbit service
(``PredictPasses`` for one spacecraft over one station, mask = the larger of the station's
and the profile's minimum elevation).

Error codes (every one with an ErrorInfo reason; bad input with a BadRequest naming the
field):

- INVALID_ARGUMENT: malformed or missing fields, a window or contact outside the limits,
  ``LEAD_TIME_NOT_MET`` (start_time sooner than 15 minutes: the request must change, not
  the system), ``NOT_IN_PASS`` (the spacecraft is not above the mask for the whole
  contact), ``REQUEST_ID_REUSED``;
- NOT_FOUND: unknown station, profile, contact or spacecraft (another tenant's profile or
  contact answers the same);
- ALREADY_EXISTS: a profile id the tenant already uses;
- FAILED_PRECONDITION: the contact is not in a state that allows the call
  (``CONTACT_NOT_SCHEDULED``, ``CONTACT_STARTED``...), ``PROFILE_IN_USE``, and
  ``NO_ANTENNA_AVAILABLE`` when every antenna is booked within the guard gap. Not ABORTED:
  ABORTED tells a client to retry the same sequence (a lost optimistic-concurrency race);
  here the conflict is decided under the station's row lock, and the same request will keep
  failing until a contact is cancelled, so the client must choose another pass;
- ABORTED only for ``PROFILE_CHANGED`` (the profile was deleted and re-created between the
  pass check and the reservation: retrying is right);
- UNAVAILABLE when the orbit service cannot be reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import numpy as np
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import contacts_pb2, contacts_pb2_grpc
from skybridge.orbit.v1 import orbit_pb2

from shared.auth import current_principal, requires
from shared.errors import (
    InvalidArgument,
    NotFound,
    Unavailable,
    Violations,
)
from shared.paging import decode_token, encode_token
from shared.wire import (
    seconds_to_duration,
    timestamp_to_unix,
    unix_to_timestamp,
)

from . import contacts as rules
from .contact_store import (
    ContactStore,
    fingerprint,
)
from .contacts import State
from .contacts_app import ContactBookings, MutationKey
from .convert import contact_message, profile_message, station_message
from .fields import (
    contact_id_field,
    duration_field,
    page_of,
    require_request_id,
    resource_id,
    spacecraft_field,
    time_field,
)
from .records import instant_micros, micros_instant

OPERATOR = "linkbroker.operator"
READ = ("contacts.read", "contacts.write", OPERATOR)
WRITE = ("contacts.write", OPERATOR)
MAX_REASON, MAX_DISPLAY_NAME = 500, 200
_Contact = contacts_pb2.Contact


class GroundStationServicer(contacts_pb2_grpc.GroundStationServiceServicer):
    """GroundStationService over a :class:`ContactStore` and the orbit service's stub."""

    def __init__(self, store: ContactStore, orbit, *, clock: Callable[[], float] = time.time,
                 lead_time_s: float = rules.DEFAULT_LEAD_TIME_S):
        self.store = store
        self.orbit = orbit
        self.clock = clock
        self.lead_time_s = lead_time_s
        #: the use cases (every transaction, replay and rule of a mutation)
        self.bookings = ContactBookings(store, clock=clock, lead_time_s=lead_time_s)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _contact_scope() -> str | None:
        """The tenant whose contacts the caller sees; None for an operator (all)."""
        principal = current_principal()
        return None if principal.has(OPERATOR) else principal.tenant

    async def _station(self, station_id: str, field: str = "ground_station"):
        return await self.bookings.station(station_id, field)

    async def _profile(self, profile_id: str, field: str = "contact_profile"):
        return await self.bookings.profile(current_principal().tenant, profile_id, field)

    @staticmethod
    def _key(method: str, request) -> MutationKey:
        """The call's idempotency key: the caller's tenant, the request_id, the method and
        the fingerprint of the request less its request_id."""
        payload = type(request)()
        payload.CopyFrom(request)
        payload.request_id = ""
        return (current_principal().tenant, request.request_id, method,
                fingerprint(method, payload.SerializeToString(deterministic=True)))

    async def _passes(self, number: int, station, mask_deg: float, min_duration_s: float,
                      start_s: float, end_s: float, window_field: str) -> list:
        """Passes of satellite `number` over `station` in ``[start_s, end_s]`` above
        `mask_deg`, from the orbit service."""
        request = orbit_pb2.PredictPassesRequest(
            points=[common_pb2.GeodeticPoint(latitude_deg=station.latitude_deg,
                                             longitude_deg=station.longitude_deg,
                                             altitude_m=station.altitude_m)],
            window=common_pb2.TimeWindow(start_time=unix_to_timestamp(start_s),
                                         end_time=unix_to_timestamp(end_s)),
            min_elevation_deg=mask_deg,
            min_duration=seconds_to_duration(max(min_duration_s, 0.0)),
            selection=orbit_pb2.SatelliteSelection(catalog_numbers=[number]))
        try:
            answer = await self.orbit.PredictPasses(request)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"satellites/{number} is not in the orbit catalog",
                               reason="SPACECRAFT_NOT_FOUND",
                               violations=[("spacecraft", f"no satellite {number}")]) from None
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
                        grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise InvalidArgument(
                    f"passes cannot be predicted: {error.details()}", reason="NO_PREDICTION",
                    violations=[(window_field, error.details() or "rejected by the orbit "
                                 "service")]) from None
            raise Unavailable("the orbit service could not predict passes",
                              reason="ORBIT_UNAVAILABLE") from None
        return list(answer.passes)

    # ------------------------------------------------------------------ ground stations
    @requires(*READ)
    async def ListGroundStations(self, request, context):
        check = Violations()
        size = page_of(check, request.page_size)
        check.raise_if_any()
        after = decode_token(request.page_token, "stations", kinds=(str,))
        rows = await self.store.list_stations(after[0] if after else None, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return contacts_pb2.ListGroundStationsResponse(
            ground_stations=[station_message(r) for r in rows],
            next_page_token=encode_token("stations", [rows[-1].id]) if more else "")

    @requires(*READ)
    async def GetGroundStation(self, request, context):
        check = Violations()
        station_id = resource_id(check, request.name, "groundStations", "name")
        check.raise_if_any()
        return contacts_pb2.GetGroundStationResponse(
            ground_station=station_message(await self._station(station_id, "name")))

    # ------------------------------------------------------------------ profiles
    @requires(*WRITE)
    async def CreateContactProfile(self, request, context):
        check = Violations()
        bad_id = rules.profile_id_problem(request.contact_profile_id)
        if bad_id:
            check.add("contact_profile_id", bad_id)
        values = {}
        if check.require(request.HasField("contact_profile") or None, "contact_profile"):
            p = request.contact_profile
            check.check(len(p.display_name) <= MAX_DISPLAY_NAME,
                        "contact_profile.display_name",
                        f"must be at most {MAX_DISPLAY_NAME} characters")
            duration = gap = None
            if p.HasField("min_viable_contact_duration"):
                duration = duration_field(check, p.min_viable_contact_duration,
                                       "contact_profile.min_viable_contact_duration")
            if p.HasField("guard_gap"):
                gap = duration_field(check, p.guard_gap, "contact_profile.guard_gap")
            malformed = {v.field for v in check.items}
            for field, problem in rules.profile_problems(p.min_elevation_deg, duration, gap):
                if f"contact_profile.{field}" not in malformed:
                    check.add(f"contact_profile.{field}", problem)
            values = {"id": request.contact_profile_id, "display_name": p.display_name,
                      "min_elevation_deg": p.min_elevation_deg, "min_duration_s": duration,
                      "guard_gap_s": rules.DEFAULT_GUARD_GAP_S if gap is None else gap}
        require_request_id(check, request.request_id)
        check.raise_if_any("the contact profile is invalid")
        answer = await self.bookings.create_profile(
            self._key("CreateContactProfile", request), values,
            lambda row: contacts_pb2.CreateContactProfileResponse(
                contact_profile=profile_message(row)).SerializeToString(deterministic=True))
        return contacts_pb2.CreateContactProfileResponse.FromString(answer)

    @requires(*READ)
    async def GetContactProfile(self, request, context):
        check = Violations()
        profile_id = resource_id(check, request.name, "contactProfiles", "name")
        check.raise_if_any()
        row = await self._profile(profile_id, "name")
        return contacts_pb2.GetContactProfileResponse(contact_profile=profile_message(row))

    @requires(*READ)
    async def ListContactProfiles(self, request, context):
        check = Violations()
        size = page_of(check, request.page_size)
        check.raise_if_any()
        after = decode_token(request.page_token, "profiles", kinds=(str,))
        rows = await self.store.list_profiles(current_principal().tenant,
                                              after[0] if after else None, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return contacts_pb2.ListContactProfilesResponse(
            contact_profiles=[profile_message(r) for r in rows],
            next_page_token=encode_token("profiles", [rows[-1].id]) if more else "")

    @requires(*WRITE)
    async def DeleteContactProfile(self, request, context):
        check = Violations()
        profile_id = resource_id(check, request.name, "contactProfiles", "name")
        require_request_id(check, request.request_id)
        check.raise_if_any()
        answer = await self.bookings.delete_profile(
            self._key("DeleteContactProfile", request), profile_id,
            lambda row: contacts_pb2.DeleteContactProfileResponse(
                contact_profile=profile_message(row)).SerializeToString(deterministic=True))
        return contacts_pb2.DeleteContactProfileResponse.FromString(answer)

    # ------------------------------------------------------------------ available contacts
    @requires(*READ)
    async def ListAvailableContacts(self, request, context):
        check = Violations()
        number = spacecraft_field(check, request.spacecraft)
        station_id = resource_id(check, request.ground_station, "groundStations",
                                  "ground_station")
        profile_id = resource_id(check, request.contact_profile, "contactProfiles",
                                  "contact_profile")
        size = page_of(check, request.page_size)
        start_s = end_s = None
        if check.require(request.HasField("window") or None, "window"):
            start_s = time_field(check, request.window, "start_time", "window.start_time")
            end_s = time_field(check, request.window, "end_time", "window.end_time")
        now = self.clock()
        if start_s is not None and end_s is not None:
            check.extend(rules.window_problems(start_s, end_s, now,
                                               start_field="window.start_time",
                                               end_field="window.end_time"))
        check.raise_if_any("the availability request is invalid")
        query = fingerprint("ListAvailableContacts", f"{number}|{station_id}|{profile_id}|"
                            f"{start_s!r}|{end_s!r}".encode())
        after = decode_token(request.page_token, query, kinds=(float,))
        station = await self._station(station_id)
        profile = await self._profile(profile_id)
        mask = max(station.min_elevation_deg, profile.min_elevation_deg)
        passes = await self._passes(number, station, mask, profile.min_duration_s, start_s,
                                    end_s, "window")
        rise = np.array([timestamp_to_unix(p.rise_time) for p in passes], float)
        sets = np.array([timestamp_to_unix(p.set_time) for p in passes], float)
        keep = np.ones(rise.size, bool) if after is None else rise > float(after[0])
        idx = np.flatnonzero(keep)
        more = idx.size > size
        idx = idx[:size]
        bookings = (await self.store.station_bookings(station_id, float(rise[idx].min()),
                                                      float(sets[idx].max()))
                    if idx.size else rules.Bookings.empty())
        busy = rules.busy_antennas(rise[idx], sets[idx], profile.guard_gap_s, bookings,
                                   station.antennas)
        items = []
        for k, i in enumerate(idx):
            p = passes[i]
            free = np.flatnonzero(~busy[k]).tolist()
            items.append(contacts_pb2.AvailableContact(
                spacecraft=f"satellites/{number}", ground_station=f"groundStations/{station_id}",
                start_time=p.rise_time, end_time=p.set_time,
                max_elevation_time=p.culmination_time, max_elevation_deg=p.max_elevation_deg,
                start_azimuth_deg=p.rise_azimuth_deg, end_azimuth_deg=p.set_azimuth_deg,
                free_antenna_indices=free,
                reservable=bool(free) and rise[i] >= now + self.lead_time_s))
        token = encode_token(query, [float(rise[idx[-1]])]) if more else ""
        return contacts_pb2.ListAvailableContactsResponse(available_contacts=items,
                                                          next_page_token=token)

    # ------------------------------------------------------------------ contacts
    @requires(*WRITE)
    async def ReserveContact(self, request, context):
        check = Violations()
        number = spacecraft_field(check, request.spacecraft)
        station_id = resource_id(check, request.ground_station, "groundStations",
                                  "ground_station")
        profile_id = resource_id(check, request.contact_profile, "contactProfiles",
                                  "contact_profile")
        start_s = time_field(check, request, "start_time", "start_time")
        end_s = time_field(check, request, "end_time", "end_time")
        require_request_id(check, request.request_id)
        check.raise_if_any("the reservation is invalid")

        async def passes(station, mask_deg, min_duration_s, start, end, window_field):
            return await self._passes(number, station, mask_deg, min_duration_s, start, end,
                                      window_field)

        answer = await self.bookings.reserve(
            self._key("ReserveContact", request), number=number, station_id=station_id,
            profile_id=profile_id, start_s=start_s, end_s=end_s, passes=passes,
            encode=lambda row: contacts_pb2.ReserveContactResponse(contact=contact_message(
                row, row.create_time.timestamp())).SerializeToString(deterministic=True))
        return contacts_pb2.ReserveContactResponse.FromString(answer)

    @requires(*READ)
    async def GetContact(self, request, context):
        check = Violations()
        contact_id = contact_id_field(check, request.name)
        check.raise_if_any()
        row = await self.store.get_contact(contact_id, self._contact_scope())
        if row is None:
            raise NotFound(f"{request.name} not found", reason="CONTACT_NOT_FOUND",
                           violations=[("name", f"no contact {contact_id!r}")])
        return contacts_pb2.GetContactResponse(contact=contact_message(row, self.clock()))

    @requires(*READ)
    async def ListContacts(self, request, context):
        check = Violations()
        station_id = number = state = None
        if request.ground_station:
            station_id = resource_id(check, request.ground_station, "groundStations",
                                      "ground_station")
        if request.spacecraft:
            number = spacecraft_field(check, request.spacecraft)
        if request.state:
            if request.state in State._value2member_map_:
                state = State(request.state)
            else:
                check.add("state", "is not a Contact.State")
        size = page_of(check, request.page_size)
        check.raise_if_any("the contact filter is invalid")
        scope = self._contact_scope()
        query = fingerprint("ListContacts", f"{scope}|{station_id}|{number}|{state}".encode())
        # The key is (start in integer microseconds, id): exact order and equality. A token
        # from before the times became DateTime (a float start) is refused as invalid.
        after = decode_token(request.page_token, query, kinds=(int, str))
        start_after = None if after is None else micros_instant(after[0])
        if after is not None and start_after is None:
            raise InvalidArgument("page_token is not valid for this request", violations=[
                ("page_token", "is not a token from a previous response to the same request")])
        now = self.clock()
        rows = await self.store.list_contacts(
            scope, station=station_id, spacecraft=number, state=state, now_s=now,
            after=None if start_after is None else (start_after, str(after[1])),
            limit=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        token = (encode_token(query, [instant_micros(rows[-1].start_time), rows[-1].id])
                 if more else "")
        return contacts_pb2.ListContactsResponse(
            contacts=[contact_message(r, now) for r in rows], next_page_token=token)

    @staticmethod
    def _contact_and_key(request) -> tuple[str | None, Violations]:
        """The contact id of `request.name`, and the violations of the name and
        request_id (the caller adds its own, then raises)."""
        check = Violations()
        contact_id = contact_id_field(check, request.name)
        require_request_id(check, request.request_id)
        return contact_id, check

    async def _change_state(self, method: str, request, contact_id: str, scope: str | None,
                            rule: Callable, target: Callable, reason: str, response_type):
        """Change the contact's state once per key (:meth:`ContactBookings.change_state`)."""
        answer = await self.bookings.change_state(
            self._key(method, request), contact_id, request.name, scope, rule, target, reason,
            lambda answer: response_type(contact=contact_message(*answer)).SerializeToString(
                deterministic=True))
        return response_type.FromString(answer)

    @requires(*WRITE)
    async def CancelContact(self, request, context):
        principal = current_principal()
        contact_id, check = self._contact_and_key(request)
        check.raise_if_any()
        return await self._change_state(
            "CancelContact", request, contact_id, self._contact_scope(),
            lambda current, row, now: rules.check_cancel(current, row.start_s, now),
            lambda current: State.CANCELLED, f"cancelled by {principal.subject}",
            contacts_pb2.CancelContactResponse)

    @requires(OPERATOR)
    async def CompleteContact(self, request, context):
        outcome = State(request.outcome) if request.outcome in State._value2member_map_ \
            else None
        contact_id, check = self._contact_and_key(request)
        if outcome not in rules.OUTCOMES:
            check.add("outcome", "must be STATE_SUCCEEDED or STATE_FAILED")
        if outcome == State.FAILED and not request.reason:
            check.add("reason", "is required for a FAILED outcome")
        check.check(len(request.reason) <= MAX_REASON, "reason",
                    f"must be at most {MAX_REASON} characters")
        check.raise_if_any()
        return await self._change_state(
            "CompleteContact", request, contact_id, None,
            lambda current, row, now: rules.check_outcome(current, outcome, row.start_s, now),
            lambda current: outcome, request.reason, contacts_pb2.CompleteContactResponse)

    @requires(OPERATOR)
    async def ProviderCancelContact(self, request, context):
        contact_id, check = self._contact_and_key(request)
        check.require(request.reason, "reason")
        check.check(len(request.reason) <= MAX_REASON, "reason",
                    f"must be at most {MAX_REASON} characters")
        check.raise_if_any()
        return await self._change_state(
            "ProviderCancelContact", request, contact_id, None,
            lambda current, row, now: rules.check_provider_cancel(current, row.end_s, now),
            lambda current: State.PROVIDER_CANCELLED, request.reason,
            contacts_pb2.ProviderCancelContactResponse)
