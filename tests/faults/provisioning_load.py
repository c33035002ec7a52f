"""Provisioning under load for the fault tests: a customer with subscriptions of set
quantities, writers that register terminals (each with its own request_id, re-sent on an
unknown outcome), and the checks of what the database holds afterwards."""

from __future__ import annotations

import itertools

import grpc
from skybridge.common.v1 import common_pb2
from skybridge.provisioning.v1 import provisioning_pb2 as pb
from skybridge.provisioning.v1 import provisioning_pb2_grpc
from skybridge.provisioning.v1 import resources_pb2 as res

from services.provisioning.api.names import decode_cursor
from tests.conftest import bearer
from tests.faults.harness import HANG, Load, Outcomes, channel_to, rows

SERVICE = pb.DESCRIPTOR.services_by_name["ProvisioningService"]
#: One small subscription fills up during the load (its later creates are refused
#: RESOURCE_EXHAUSTED); the others take the rest.
QUANTITIES = (5, 1000, 1000, 1000)
_ids = itertools.count()


def customer_token(minter, tenant: str = "contoso"):
    return bearer(minter, "provisioning.write", tenant=tenant, subject=f"{tenant}-admin")


def feed_token(minter):
    return bearer(minter, "provisioning.events", "service", tenant="skybridge",
                  subject="service:linkbroker")


def stub_for(settings, target: str):
    channel = channel_to(settings, "provisioning", SERVICE, target)
    return channel, provisioning_pb2_grpc.ProvisioningServiceStub(channel)


async def seed_customer(stub, meta, quantities=QUANTITIES) -> tuple[str, list[str]]:
    """A customer and its active subscriptions (plans/enterprise-100), by name."""
    tag = next(_ids)
    customer = (await stub.CreateCustomer(pb.CreateCustomerRequest(
        customer=res.Customer(display_name="Contoso Ltd", sector=res.SECTOR_PRIVATE,
                              country="US", contact_email="it@contoso.example.com"),
        request_id=f"seed-customer-{tag}"), metadata=meta, wait_for_ready=True)).customer
    subscriptions = []
    for i, quantity in enumerate(quantities):
        sub = (await stub.CreateSubscription(pb.CreateSubscriptionRequest(
            parent=customer.name, subscription=res.Subscription(plan="plans/enterprise-100",
                                                                quantity=quantity),
            request_id=f"seed-sub-{tag}-{i}"), metadata=meta)).subscription
        sub = (await stub.ActivateSubscription(pb.ActivateSubscriptionRequest(
            name=sub.name, plan="plans/enterprise-100", quantity=quantity,
            request_id=f"seed-activate-{tag}-{i}"), metadata=meta)).subscription
        subscriptions.append(sub.name)
    return customer.name, subscriptions


def terminal_writers(stub, meta, customer: str, subscriptions: list[str],
                     workers: int = 6, also_refused: tuple = ()) -> Load:
    """Writers registering terminals one after the other until stopped; every call's
    outcome is settled (re-sent with its request_id while unknown), so once they are
    stopped every write that reached the database was acknowledged or refused.
    `outcomes.acked` maps request_id -> (terminal, subscription, serial number); a create
    refused RESOURCE_EXHAUSTED (or with a code in `also_refused`) goes to `refused`."""
    tag = next(_ids)
    load = Load(None, definitive=(grpc.StatusCode.RESOURCE_EXHAUSTED, *also_refused),
                workers=workers)

    def call_for(worker: int, n: int):
        request_id = f"t{tag}-w{worker}-{n}"
        serial = f"UT-{tag}-{worker}-{n}"
        subscription = subscriptions[(worker + n) % len(subscriptions)]
        request = pb.CreateTerminalRequest(
            parent=customer, request_id=request_id, terminal=res.Terminal(
                serial_number=serial, subscription=subscription,
                location=common_pb2.GeodeticPoint(latitude_deg=47.6, longitude_deg=-122.3)))

        def attempt():
            return stub.CreateTerminal(request, metadata=meta, wait_for_ready=True)

        return attempt, (request_id, subscription, serial)

    def on_ok(key, answer) -> None:
        request_id, subscription, serial = key
        load.outcomes.acked[request_id] = (answer.terminal.name, subscription, serial)

    def on_refused(key, error) -> None:
        request_id, subscription, serial = key
        load.outcomes.refused[request_id] = (subscription, serial)

    load.call_for, load.on_ok, load.on_refused = call_for, on_ok, on_refused
    return load


async def listed_terminals(stub, meta, customer: str) -> dict[str, res.Terminal]:
    """Every terminal of `customer`, through ListTerminals (retried by the channel)."""
    found, token = {}, ""
    while True:
        page = await stub.ListTerminals(pb.ListTerminalsRequest(
            parent=customer, page_size=500, page_token=token), metadata=meta,
            wait_for_ready=True)
        found.update((t.name, t) for t in page.terminals)
        token = page.next_page_token
        if not token:
            return found


async def catch_up_feed(stub, minter, settings) -> list[int]:
    """Read WatchEvents from the start until every event in the outbox has come (which
    publishes them all); returns the feed positions in the order received."""
    (total,), = await rows(settings, "provisioning", "SELECT count(*) FROM events")
    call = stub.WatchEvents(pb.WatchEventsRequest(), metadata=feed_token(minter),
                            timeout=HANG, wait_for_ready=True)
    positions = []
    try:
        async for answer in call:
            positions.append(decode_cursor(answer.event.cursor))
            if len(positions) >= total:
                break
    finally:
        call.cancel()
    return positions


async def check_store(settings, stub, minter, customer: str, outcomes: Outcomes) -> dict:
    """The checks after the load; returns figures for the report.

    - every acknowledged write (request_id -> terminal) is there, through ListTerminals,
      with the subscription and serial number it was created with;
    - nothing else is: the terminals in the database are exactly the acknowledged ones
      (every attempt was settled, so a write that committed was acknowledged);
    - nothing half-written: each subscription's `terminal_count` equals its terminals and
      is within its quantity; each terminal has its one `terminal.create` audit record and
      its one TERMINAL_REGISTERED event; no idempotency key without its answer;
    - the outbox has no gap: once the feed has caught up, every event has a position and
      the positions are exactly 1..N, received in that order."""
    meta = customer_token(minter)
    listed = await listed_terminals(stub, meta, customer)
    for request_id, (name, subscription, serial) in outcomes.acked.items():
        assert name in listed, f"acknowledged {request_id} -> {name} is missing"
        assert (listed[name].subscription, listed[name].serial_number) == (subscription,
                                                                          serial)
    assert set(listed) == {name for name, _, _ in outcomes.acked.values()}
    assert not set(listed[n].serial_number for n in listed) & {
        serial for _, serial in outcomes.refused.values()}

    subs = await rows(settings, "provisioning",
                      "SELECT s.id, s.quantity, s.terminal_count, count(t.id) "
                      "FROM subscriptions s LEFT JOIN terminals t ON t.subscription_id = s.id "
                      "AND t.state <> 'DECOMMISSIONED' GROUP BY s.id, s.quantity, "
                      "s.terminal_count")
    for sub_id, quantity, counted, present in subs:
        assert counted == present <= quantity, (sub_id, quantity, counted, present)
    full = [sub for sub in subs if sub[3] == sub[1]]

    terminals = await rows(settings, "provisioning",
                           "SELECT t.id, t.customer_id, "
                           "(SELECT count(*) FROM audit_records a WHERE a.action = "
                           "'terminal.create' AND a.resource = 'customers/' || t.customer_id "
                           "|| '/terminals/' || t.id), "
                           "(SELECT count(*) FROM events e WHERE e.type = "
                           "'TERMINAL_REGISTERED' AND e.resource = 'customers/' || "
                           "t.customer_id || '/terminals/' || t.id) FROM terminals t")
    assert len(terminals) == len(outcomes.acked)
    for terminal_id, _, audits, events in terminals:
        assert (audits, events) == (1, 1), terminal_id
    (orphans,), = await rows(settings, "provisioning",
                             "SELECT count(*) FROM events e WHERE e.type = "
                             "'TERMINAL_REGISTERED' AND NOT EXISTS (SELECT FROM terminals t "
                             "WHERE e.resource = 'customers/' || t.customer_id || "
                             "'/terminals/' || t.id)")
    assert orphans == 0
    (unanswered,), = await rows(settings, "provisioning",
                                "SELECT count(*) FROM idempotency_keys WHERE response IS NULL")
    assert unanswered == 0
    keys = {rid for (rid,) in await rows(settings, "provisioning",
                                         "SELECT request_id FROM idempotency_keys")}
    assert set(outcomes.acked) <= keys

    received = await catch_up_feed(stub, minter, settings)
    positions = [p for (p,) in await rows(settings, "provisioning",
                                          "SELECT position FROM events ORDER BY seq")]
    assert None not in positions, "events left unpublished after the feed caught up"
    assert sorted(positions) == list(range(1, len(positions) + 1)), "gap in the outbox"
    assert received == list(range(1, len(positions) + 1))
    return {"acknowledged": len(outcomes.acked), "refused_quantity": len(outcomes.refused),
            "terminals_in_db": len(terminals), "events": len(positions),
            "subscriptions_full": len(full), "attempts": outcomes.summary()}
