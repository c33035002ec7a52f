"""The orbit catalog's use cases: writes in one transaction each, and the snapshots reads use.

Writes (importing element sets, generating a constellation, seeding an empty catalog) run
under the catalog's version lock, one writer at a time, so the catalog version moves once
per write; a write with a ``request_id`` happens once per (tenant, request_id): a retry gets
the first answer, and another request under the same id is INVALID_ARGUMENT
REQUEST_ID_REUSED (:func:`write_key`, :meth:`services.orbit.store.Catalog.claim`).

Reads resolve against a :class:`~services.orbit.catalog.CatalogSnapshot` (the newest element
sets at one catalog version, a few kept, least recently used first): a selection resolves
to its columns (:meth:`CatalogApp.select`; an unknown satellite or group is NOT_FOUND),
instants too far from an element-set epoch are refused
(:meth:`CatalogApp.check_epoch_offset`), and propagation uses a propagator cached per
(version, selection).

The servicer (:mod:`services.orbit.api`) validates requests and translates messages; the
transactions, caches and idempotency keys are this module's, and what a write does, and
when it is refused, is decided here.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import numpy as np

from services.orbit import walker
from services.orbit.catalog import CatalogSnapshot
from services.orbit.elements import ElementSet
from services.orbit.kernel import CatalogPropagator, cached_propagator
from services.orbit.records import ImportOutcome, StoredGroup
from services.orbit.store import Catalog
from services.orbit.visibility import prepare as prepare_visibility
from shared.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from shared.idempotency import Key, fingerprint, key_tenant

__all__ = ["CatalogApp", "Generated", "write_key"]

#: Snapshots kept (each holds the catalog's element sets once).
SNAPSHOT_CACHE_SIZE = 3
#: Generated satellites are numbered from here unless the caller gives a first number.
GENERATED_NUMBER_FLOOR = 900_000
MAX_CATALOG_NUMBER = 999_999_999
#: How far from a satellite's element-set epoch it may be propagated.
MAX_EPOCH_OFFSET_DAYS = 30.0
#: Violations listed in one refusal.
MAX_VIOLATIONS = 20


class Message(Protocol):
    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...

    def MergeFrom(self, other: Any, /) -> Any: ...


M = TypeVar("M", bound=Message)
RunCpu = Callable[..., Awaitable]


class Request(Message, Protocol):
    """A write request: a message with a ``request_id`` (AIP-155)."""

    request_id: str

    def ClearField(self, field_name: str, /) -> None: ...


def write_key(method: str, request: Request) -> Key | None:
    """The idempotency key of a write (None: no ``request_id``, so no replay): the
    caller's tenant, the request_id, the method and the fingerprint of the request without
    its request_id (:func:`shared.idempotency.fingerprint`)."""
    if not request.request_id:
        return None
    payload = type(request)()
    payload.MergeFrom(request)
    payload.ClearField("request_id")
    return Key(key_tenant(), request.request_id, method,
               fingerprint(method, payload.SerializeToString(deterministic=True)))


@dataclass(frozen=True)
class Generated:
    """What generating a constellation stored."""

    outcome: ImportOutcome
    group: StoredGroup
    first_catalog_number: int
    count: int


class CatalogApp:
    """The catalog's writes and snapshots, over a :class:`Catalog` store."""

    def __init__(self, catalog: Catalog, run_cpu: RunCpu) -> None:
        self.catalog = catalog
        self.run_cpu = run_cpu
        self._token = uuid.uuid4().hex  # separates this instance's propagator cache keys
        self._snapshots: OrderedDict[tuple, CatalogSnapshot] = OrderedDict()
        self._snapshot_lock = asyncio.Lock()

    # -- reads ------------------------------------------------------------------------

    async def snapshot(self, as_of_us: int | None = None) -> CatalogSnapshot:
        """The newest element sets at the current version (at or before ``as_of_us``)."""
        version = await self.catalog.version()
        key = (version, as_of_us)
        async with self._snapshot_lock:
            snap = self._snapshots.get(key)
            if snap is not None:
                self._snapshots.move_to_end(key)
                return snap
            sets = await self.catalog.newest_element_sets(as_of_us)
            snap = await self.run_cpu(CatalogSnapshot, version, as_of_us, tuple(sets))
            self._snapshots[key] = snap
            while len(self._snapshots) > SNAPSHOT_CACHE_SIZE:
                self._snapshots.popitem(last=False)
            return snap

    async def warm(self) -> None:
        """Load the catalog, build the whole-catalog propagator and compile the visibility
        kernel (a start-up hook: the first requests find them ready)."""
        await self.run_cpu(prepare_visibility)  # compile the look-angle kernel (~0.1 s)
        snap = await self.snapshot(None)
        if snap.size:
            await self.propagator(snap, None)

    async def select(self, field: str, as_of_us: int | None, *,
                     numbers: np.ndarray | None = None, group_id: str | None = None,
                     how: str = "all") -> tuple[CatalogSnapshot, np.ndarray]:
        """The snapshot at ``as_of_us`` and the columns of a selection: every satellite
        (``how`` "all"), a group's members (``group_id``) or ``numbers`` (``how``
        "catalog_numbers" or "satellites", the request field they came from). An empty
        catalog or group is INVALID_ARGUMENT; an unknown group or satellite NOT_FOUND."""
        snap = await self.snapshot(as_of_us)
        at = " with an element set at or before as_of_time" if as_of_us else ""
        if how == "all":
            if snap.size == 0:
                raise InvalidArgument(
                    "the catalog is empty" + (" at as_of_time" if as_of_us else ""),
                    reason="EMPTY_CATALOG",
                    violations=[(f"{field}.all", "the catalog holds no satellites" + at)])
            return snap, np.arange(snap.size)
        if group_id is not None:
            members = await self.catalog.group_numbers(group_id)
            if members is None:
                raise NotFound(f"group {group_id} not found", reason="GROUP_NOT_FOUND",
                               violations=[(f"{field}.group", f"no group 'groups/{group_id}'")])
            idx, _ = snap.indices(members)
            if idx.size == 0:
                raise InvalidArgument(
                    f"group {group_id} has no satellites to use", reason="EMPTY_GROUP",
                    violations=[(f"{field}.group", "the group has no satellites" + at)])
            return snap, idx
        assert numbers is not None
        idx, missing = snap.indices(numbers)
        if missing.size:
            raise NotFound(
                f"{missing.size} selected satellite(s) not in the catalog" + at,
                reason="SATELLITE_NOT_FOUND",
                violations=[(f"{field}.{how}[{m}]", f"no satellite {int(numbers[m])}")
                            for m in missing[:MAX_VIOLATIONS]])
        return snap, idx

    async def propagator(self, snap: CatalogSnapshot, idx: np.ndarray | None
                         ) -> CatalogPropagator:
        """The cached propagator for columns ``idx`` of ``snap`` (None: all of it)."""
        if idx is None or (idx.size == snap.size and np.array_equal(idx, np.arange(snap.size))):
            selection = "all"
            sets: Sequence[ElementSet] | None = snap.element_sets
        else:
            selection = hashlib.sha1(idx.astype(np.int64).tobytes()).hexdigest()
            sets = None
        key = ("orbit", self._token, snap.version, snap.as_of_us, selection)
        return await self.run_cpu(
            cached_propagator, key, sets if sets is not None else (lambda: snap.subset(idx)))

    @staticmethod
    def check_epoch_offset(snap: CatalogSnapshot, idx: np.ndarray, jd: np.ndarray,
                           fr: np.ndarray, field: str) -> None:
        """INVALID_ARGUMENT TOO_FAR_FROM_EPOCH when an instant ``jd + fr`` is more than
        :data:`MAX_EPOCH_OFFSET_DAYS` from the epoch of a satellite of ``idx`` (SGP4's
        error grows past usefulness)."""
        offset, number = snap.epoch_offset_days(idx, jd, fr)
        if offset > MAX_EPOCH_OFFSET_DAYS:
            raise InvalidArgument(
                f"times are {offset:.1f} days from the epoch of satellite {number}; "
                f"the limit is {MAX_EPOCH_OFFSET_DAYS:g} days",
                reason="TOO_FAR_FROM_EPOCH",
                violations=[(field, f"must be within {MAX_EPOCH_OFFSET_DAYS:g} days of every "
                                    f"selected satellite's element-set epoch; satellite "
                                    f"{number} is {offset:.1f} days away")])

    # -- writes -----------------------------------------------------------------------

    async def import_element_sets(self, request: Request, sets: Sequence[ElementSet],
                                  group: tuple[str, str, str] | None,
                                  answer: Callable[[ImportOutcome], M],
                                  decode: Callable[[bytes], M]) -> M:
        """Store ``sets`` (adding them to ``group`` = (id, display name, kind) if given);
        ``answer(outcome)`` is the response, kept for retries of the request's
        ``request_id``."""
        async def work(session) -> M:
            return answer(await self.catalog.store_element_sets(session, sets, group=group))

        return await self._once(write_key("ImportElementSets", request), work, decode)

    async def generate_constellation(
            self, request: Request, *, group_id: str, display_name: str, kind: str,
            shells: Sequence[walker.WalkerShell], epoch: datetime, first: int | None,
            answer: Callable[[Generated], M], decode: Callable[[bytes], M]) -> M:
        """Generate Walker shells at ``epoch`` into a new group, numbered from ``first``
        (None: the first free range from :data:`GENERATED_NUMBER_FLOOR`). ALREADY_EXISTS
        when the group exists or the numbers are taken; RESOURCE_EXHAUSTED when no free
        range is left."""
        total = sum(s.total for s in shells)

        async def work(session) -> M:
            if await self.catalog.group_exists(session, group_id):
                raise AlreadyExists(f"group {group_id} already exists", reason="GROUP_EXISTS",
                                    violations=[("group_id", "a group with this id exists")])
            start = first
            if not start:
                start = await self.catalog.next_free_number(session, GENERATED_NUMBER_FLOOR)
                if start + total - 1 > MAX_CATALOG_NUMBER:
                    raise ResourceExhausted("no free catalog numbers left",
                                            violations=[("first_catalog_number",
                                                         "no free range; give one")])
            last = start + total - 1
            taken = await self.catalog.existing_numbers(session, start, last)
            if taken:
                raise AlreadyExists(
                    f"catalog numbers {start}..{last} overlap existing satellites",
                    reason="CATALOG_NUMBERS_TAKEN",
                    violations=[("first_catalog_number",
                                 f"{start}..{last} overlaps satellites "
                                 f"{', '.join(map(str, taken))}")])
            sets = await self.run_cpu(walker.walker_shells, list(shells), epoch, start)
            outcome = await self.catalog.store_element_sets(
                session, sets, new_only=True, group=(group_id, display_name, kind))
            stored = await self.catalog.group_in(session, group_id)
            return answer(Generated(outcome, stored, start, len(sets)))

        return await self._once(write_key("GenerateConstellation", request), work, decode)

    async def seed(self, groups: Sequence[tuple[str, str, str, str]], epoch: datetime) -> int:
        """Generate the presets ``groups`` = (group id, display name, preset, kind) into an
        empty catalog, numbered from :data:`GENERATED_NUMBER_FLOOR`; returns satellites
        added (0 when the catalog already holds any: idempotent, and safe for replicas
        starting together)."""
        added = 0
        async with self.catalog.sessions.begin() as session:
            await Catalog.lock_version(session)
            if not await self.catalog.is_empty_in(session):
                return 0
            first = GENERATED_NUMBER_FLOOR
            for group_id, display, preset, kind in groups:
                sets = await self.run_cpu(walker.preset, preset, epoch, first)
                await self.catalog.store_element_sets(session, sets, new_only=True,
                                                      group=(group_id, display, kind))
                first += len(sets)
                added += len(sets)
        return added

    async def _once(self, key: Key | None, work: Callable[..., Awaitable[M]],
                    decode: Callable[[bytes], M]) -> M:
        """``work(session)`` in one transaction under the catalog lock, once per key (None:
        every time)."""
        async with self.catalog.sessions.begin() as session:
            await Catalog.lock_version(session)
            if key is not None:
                first = await Catalog.claim(session, key)
                if first is not None:
                    return decode(first)
            response = await work(session)
            if key is not None:
                await Catalog.answer(session, key, response.SerializeToString())
            return response
