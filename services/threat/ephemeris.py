"""Where the sensor satellites are: `SensorEphemeris` and its orbit-service implementation.

The tracker needs each detection's sensor position (ECEF = the orbit service's ITRF,
metres) and, for lines of sight given as azimuth/elevation, the sensor frame, which needs the
velocity too. Positions come from the orbit service: `OrbitEphemeris` asks `Propagate` (ITRF,
with velocities) for the sensor satellites on a regular grid (`step_s`, default 10 s) over
windows of `window_s` (default 600 s), caches the windows (LRU), and interpolates between
grid points with cubic Hermite polynomials using the velocities (error below a millimetre at
10 s steps for a 1,000 km orbit: the fourth derivative of a circular LEO orbit is about
omega^4 r = 9e-6 m/s^4, so h^4/384 |x''''| = 2e-4 m).

The only outgoing data are catalog numbers and times: nothing about detections or tracks
leaves the service.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from shared.clients.orbit import propagate
from shared.errors import FailedPrecondition, Unavailable


class EphemerisGrid:
    """Positions and velocities of S satellites on a regular grid of T instants.

    ``start_s`` is in tracker seconds (seconds after the tracker epoch); ``positions_m``
    and ``velocities_m_s`` are ``(T, S, 3)`` ECEF.
    """

    def __init__(self, start_s: float, step_s: float, positions_m: np.ndarray,
                 velocities_m_s: np.ndarray) -> None:
        self.start_s = float(start_s)
        self.step_s = float(step_s)
        self.positions_m = np.asarray(positions_m, float)
        self.velocities_m_s = np.asarray(velocities_m_s, float)

    @property
    def end_s(self) -> float:
        return self.start_s + self.step_s * float(self.positions_m.shape[0] - 1)

    def interpolate(self, sat: np.ndarray, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cubic-Hermite position and velocity of satellite columns ``sat`` at ``t_s``."""
        u = (np.asarray(t_s, float) - self.start_s) / self.step_s
        i = np.clip(np.floor(u).astype(np.int64), 0, self.positions_m.shape[0] - 2)
        s = (u - i)[:, None]
        h = self.step_s
        p0, p1 = self.positions_m[i, sat], self.positions_m[i + 1, sat]
        v0, v1 = self.velocities_m_s[i, sat], self.velocities_m_s[i + 1, sat]
        s2, s3 = s * s, s * s * s
        pos = ((2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * h * v0
               + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * h * v1)
        vel = ((6 * s2 - 6 * s) * p0 + (3 * s2 - 4 * s + 1) * h * v0
               + (-6 * s2 + 6 * s) * p1 + (3 * s2 - 2 * s) * h * v1) / h
        return pos, vel


class SensorEphemeris:
    """Sensor positions for detections; subclasses fetch grids (`fetch_grid`).

    ``sample(sensor_index, t_s)``: sensor columns ``0..S-1`` (the order of the configured
    satellites) and tracker times; returns ECEF positions (m) and velocities (m/s).
    """

    def __init__(self, epoch: datetime, n_sensors: int, step_s: float = 10.0,
                 window_s: float = 600.0, cache_windows: int = 64) -> None:
        self.epoch = epoch
        self.n_sensors = n_sensors
        self.step_s = float(step_s)
        self.window_s = float(np.ceil(window_s / step_s) * step_s)
        self._cache: OrderedDict[int, EphemerisGrid] = OrderedDict()
        self._cache_windows = cache_windows
        self._inflight: dict[int, asyncio.Future[EphemerisGrid]] = {}

    async def fetch_grid(self, start_s: float, step_s: float, count: int) -> EphemerisGrid:
        raise NotImplementedError

    async def catalog_numbers(self) -> tuple[int, ...]:
        """The catalog numbers of the sensor satellites, sensor ids 1..N in this order."""
        return tuple(range(1, self.n_sensors + 1))

    async def _window(self, k: int) -> EphemerisGrid:
        grid = self._cache.get(k)
        if grid is not None:
            self._cache.move_to_end(k)
            return grid
        pending = self._inflight.get(k)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._inflight[k] = future
        try:
            # one extra step at the end so a time at the window's end interpolates inside it
            count = int(round(self.window_s / self.step_s)) + 2
            grid = await self.fetch_grid(k * self.window_s, self.step_s, count)
            self._cache[k] = grid
            if len(self._cache) > self._cache_windows:
                self._cache.popitem(last=False)
            future.set_result(grid)
            return grid
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[k]

    async def sample(self, sensor_index: np.ndarray, t_s: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t_s, float)
        sat = np.asarray(sensor_index, np.int64)
        pos = np.empty((t.shape[0], 3))
        vel = np.empty((t.shape[0], 3))
        if t.size == 0:
            return pos, vel
        window = np.floor(t / self.window_s).astype(np.int64)
        keys = np.unique(window)
        grids = await asyncio.gather(*(self._window(int(k)) for k in keys))
        for k, grid in zip(keys, grids, strict=True):  # one loop step per 10-minute window
            rows = np.flatnonzero(window == k) if keys.size > 1 else slice(None)
            pos[rows], vel[rows] = grid.interpolate(sat[rows], t[rows])
        return pos, vel


class OrbitEphemeris(SensorEphemeris):
    """Grids from the orbit service's `Propagate` (ITRF, km -> m).

    The sensor satellites are the configured catalog numbers or, when none are configured,
    the members of an orbit group (default `groups/tracking-sensors`, which the orbit
    service seeds), resolved on first use with `ListSatellites` (catalog-number order).
    """

    def __init__(self, stub: Any, catalog_numbers: Sequence[int], epoch: datetime, *,
                 group: str = "groups/tracking-sensors", step_s: float = 10.0,
                 window_s: float = 600.0) -> None:
        super().__init__(epoch, len(catalog_numbers), step_s, window_s)
        self.stub = stub
        self.group = group
        self._numbers = tuple(int(n) for n in catalog_numbers)
        self._resolve_lock = asyncio.Lock()

    async def catalog_numbers(self) -> tuple[int, ...]:
        if self._numbers:
            return self._numbers
        import grpc
        from skybridge.orbit.v1 import orbit_pb2

        async with self._resolve_lock:
            if self._numbers:
                return self._numbers
            numbers: list[int] = []
            token = ""
            try:
                while True:
                    page = await self.stub.ListSatellites(orbit_pb2.ListSatellitesRequest(
                        group=self.group, page_size=1000, page_token=token))
                    numbers += [int(s.catalog_number) for s in page.satellites]
                    token = page.next_page_token
                    if not token:
                        break
            except grpc.aio.AioRpcError as error:
                raise Unavailable(f"cannot resolve the sensor satellites of {self.group} "
                                  f"({error.code().name})", reason="ORBIT_UNAVAILABLE") from None
            if not numbers:
                raise FailedPrecondition(f"the orbit group {self.group} has no satellites",
                                         reason="NO_SENSOR_SATELLITES")
            self._numbers = tuple(sorted(numbers))
            self.n_sensors = len(self._numbers)
            return self._numbers

    async def fetch_grid(self, start_s: float, step_s: float, count: int) -> EphemerisGrid:
        import grpc

        numbers = await self.catalog_numbers()
        try:
            answer = await propagate(self.stub, catalog_numbers=list(numbers),
                                     start=self.epoch + timedelta(seconds=start_s),
                                     step_s=step_s, count=count, frame="itrf",
                                     include_velocity=True)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise FailedPrecondition(
                    f"the orbit service cannot propagate the sensor satellites "
                    f"{list(numbers)}: {error.details()}",
                    reason="SENSOR_EPHEMERIS_UNAVAILABLE") from None
            raise Unavailable(f"the orbit service is unavailable ({error.code().name})",
                              reason="ORBIT_UNAVAILABLE") from None
        answered = answer.catalog_numbers.tolist()
        if sorted(answered) != sorted(numbers) or answer.velocities is None:
            raise Unavailable("the orbit service answered for other satellites than asked",
                              reason="ORBIT_BAD_ANSWER")
        columns = [answered.index(n) for n in numbers]
        pos = answer.positions[:, columns] * 1e3
        vel = answer.velocities[:, columns] * 1e3
        if not np.all(np.isfinite(pos)) or not np.all(np.isfinite(vel)):
            raise FailedPrecondition("the orbit service returned no state for some sensor "
                                     "satellites at the detection times",
                                     reason="SENSOR_EPHEMERIS_UNAVAILABLE")
        return EphemerisGrid(start_s, step_s, pos, vel)
