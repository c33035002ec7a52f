"""Record -> protobuf for the link broker's servicers: the one place a lease, gateway,
path, station, profile or contact becomes a message (times through :mod:`shared.wire`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from google.protobuf import timestamp_pb2
from skybridge.common.v1 import common_pb2
from skybridge.linkbroker.v1 import contacts_pb2
from skybridge.linkbroker.v1 import linkbroker_pb2 as pb

from services.linkbroker import contacts as rules
from services.linkbroker.contacts import State
from services.linkbroker.plan import LinkPlan, SlotPath
from services.linkbroker.records import (
    ContactRecord,
    GatewayRecord,
    Lease,
    LinkState,
    ProfileRecord,
    StationRecord,
)
from services.linkbroker.slots import slot_start
from shared.wire import datetime_to_timestamp, seconds_to_duration

if TYPE_CHECKING:
    from services.linkbroker.broker import LinkBroker

__all__ = ["contact_message", "finite_or_zero", "gateway_pb", "link_pb", "link_state", "profile_message",
           "slot_pb", "slot_ts", "station_message"]


def slot_ts(slot: int) -> timestamp_pb2.Timestamp:
    """The start of a slot as a Timestamp."""
    return datetime_to_timestamp(slot_start(slot))


def link_state(state: LinkState | str) -> int:
    return pb.Link.State.Value("STATE_" + state)


def finite_or_zero(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


def slot_pb(p: SlotPath) -> pb.PathSlot:
    if not p.routed:
        return pb.PathSlot(start_time=slot_ts(p.slot), routed=False)
    return pb.PathSlot(start_time=slot_ts(p.slot), routed=True, serving_satellite=p.serving,
                       hops=p.hops, gateway=f"gateways/{p.gateway}",
                       laser_links=p.laser_links, one_way_ms=p.one_way_ms,
                       round_trip_ms=p.rtt_ms, elevation_deg=p.elevation_deg)


def link_pb(lease: Lease, *, slots: bool = False, plan: LinkPlan | None = None) -> pb.Link:
    plan = plan or LinkPlan.decode(lease.plan)
    median, worst = plan.rtt_stats()
    link = pb.Link(
        name=f"links/{lease.id}", customer=f"customers/{lease.customer}",
        terminal=f"customers/{lease.customer}/terminals/{lease.terminal}",
        subscription=lease.subscription, region=f"regions/{lease.region}",
        bandwidth_mbps=lease.bandwidth_mbps,
        window=common_pb2.TimeWindow(start_time=slot_ts(lease.first_slot),
                                     end_time=slot_ts(lease.end_slot)),
        state=link_state(lease.state),
        priority=pb.Link.Priority.Value("PRIORITY_" + lease.priority),
        state_reason=lease.state_reason, median_round_trip_ms=finite_or_zero(median),
        max_round_trip_ms=finite_or_zero(worst), handovers=plan.handovers,
        plan_revision=lease.plan_revision, create_time=datetime_to_timestamp(lease.create_time),
        update_time=datetime_to_timestamp(lease.update_time))
    if slots:
        link.slots.extend(slot_pb(p) for p in plan.paths)
    return link


def gateway_pb(gateway: GatewayRecord, broker: LinkBroker) -> pb.Gateway:
    fibre = broker.constellation.fibre
    region = broker.constellation.regions.get(gateway.region)
    return pb.Gateway(
        name=f"gateways/{gateway.id}", display_name=gateway.display_name,
        location=common_pb2.GeodeticPoint(latitude_deg=gateway.latitude_deg,
                                          longitude_deg=gateway.longitude_deg,
                                          altitude_m=gateway.altitude_m),
        antennas=gateway.antennas, region=f"regions/{gateway.region}",
        capacity_mbps=broker.capacity.gateway_capacity_gbps(gateway.antennas) * 1e3,
        state=pb.Gateway.State.Value("STATE_" + gateway.state),
        fibre_one_way_ms=float(fibre.one_way_ms(gateway.latitude_deg, gateway.longitude_deg,
                                                region.latitude_deg, region.longitude_deg)),
        update_time=datetime_to_timestamp(gateway.update_time))


# --- ground-station contacts ----------------------------------------------------------------

def station_message(row: StationRecord) -> contacts_pb2.GroundStation:
    return contacts_pb2.GroundStation(
        name=f"groundStations/{row.id}", display_name=row.display_name,
        location=common_pb2.GeodeticPoint(latitude_deg=row.latitude_deg,
                                          longitude_deg=row.longitude_deg,
                                          altitude_m=row.altitude_m),
        antennas=row.antennas, min_elevation_deg=row.min_elevation_deg,
        provider=row.provider, region=f"regions/{row.region}")


def profile_message(m: ProfileRecord) -> contacts_pb2.ContactProfile:
    return contacts_pb2.ContactProfile(
        name=f"contactProfiles/{m.id}", display_name=m.display_name,
        min_elevation_deg=m.min_elevation_deg,
        min_viable_contact_duration=seconds_to_duration(m.min_duration_s),
        guard_gap=seconds_to_duration(m.guard_gap_s), create_time=datetime_to_timestamp(m.create_time))


def contact_message(m: ContactRecord, now_s: float) -> contacts_pb2.Contact:
    state = rules.effective_state(State[m.state], m.end_s, now_s)
    return contacts_pb2.Contact(
        name=f"contacts/{m.id}", spacecraft=f"satellites/{m.spacecraft}",
        ground_station=f"groundStations/{m.ground_station}",
        contact_profile=f"contactProfiles/{m.profile}", antenna_index=m.antenna,
        start_time=datetime_to_timestamp(m.start_time),
        end_time=datetime_to_timestamp(m.end_time),
        max_elevation_deg=m.max_elevation_deg, start_azimuth_deg=m.start_azimuth_deg,
        end_azimuth_deg=m.end_azimuth_deg, min_elevation_deg=m.min_elevation_deg,
        guard_gap=seconds_to_duration(m.guard_gap_s), state=int(state),
        state_reason=m.state_reason, create_time=datetime_to_timestamp(m.create_time),
        update_time=datetime_to_timestamp(m.update_time))
