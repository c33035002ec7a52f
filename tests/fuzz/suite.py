"""The four services in this process on one backend, quiet, with a few real resources in
them, as the fuzzer's targets.

- orbit (seeded: Starlink Gen1 and the tracking sensors), provisioning, the link broker
  (pointed at both) and threat (pointed at orbit), each built by `shared.runner.builder_for`
  on port 0;
- background loops that would write at times of their own are off or stopped: provisioning
  without its worker and sweeper (the worker's step is run by the fuzzer before it measures
  a mutating call: `quiet_steps`), the link broker's sweep and catalog poll on a period
  longer than any run, its revocation follower stopped (it would end links when a fuzzed
  call suspends a subscription, at a moment of the feed's choosing);
- `warm_up` creates a customer with an active subscription and terminal for two tenants, a
  link, a contact profile and a defended asset, then lists every collection, so the pool
  holds real names before the first fuzzed call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass

from shared.runner import builder_for
from tests.fuzz.harness import Target
from tests.fuzz.pool import Pool

log = logging.getLogger("skybridge.fuzz")

SERVICES = ("orbit", "provisioning", "linkbroker", "threat")
#: Longer than any run: the loop never wakes.
NEVER = 10 * 365 * 86400.0


@dataclass
class FuzzSuite:
    settings: object
    minter: object
    kits: dict[str, object] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    @property
    def quiet_steps(self):
        # the operation worker's step, then the outbox relay (which readers of the feed also
        # run: after it, a concurrent WatchEvents has nothing left to publish)
        kit = self.kits.get("provisioning")
        if kit is None:
            return []
        from services.provisioning.app import operations

        return [lambda: operations.run_pending(kit.uow), kit.store.publish_events]

    async def start(self) -> None:
        from services.linkbroker.settings import BrokerSettings
        from services.threat.settings import ThreatSettings

        for name in SERVICES:
            target = lambda n: f"127.0.0.1:{self.kits[n].server.port}"  # noqa: E731
            options = {
                "orbit": dict(warm=False),
                "provisioning": dict(background=False),
                "linkbroker": dict(
                    orbit_target=target("orbit") if "orbit" in self.kits else None,
                    provisioning_target=(target("provisioning")
                                         if "provisioning" in self.kits else None),
                    broker_settings=BrokerSettings(block_slots=60, sweep_seconds=NEVER,
                                                   catalog_poll_seconds=NEVER,
                                                   feed_retry_seconds=0.2)),
                "threat": dict(threat_settings=ThreatSettings(),
                               orbit_target=target("orbit") if "orbit" in self.kits else None),
            }[name]
            settings = replace(self.settings, seed=True) if name == "orbit" else self.settings
            kit = await builder_for(name)(settings, port=0, **options)
            await kit.server.start()
            await kit.server.become_ready()
            self.kits[name] = kit
        follower = getattr(self.kits["linkbroker"], "revocation", None)
        if follower is not None:
            await follower.stop()
        for name, kit in self.kits.items():
            target = Target(name, kit)
            await target.open()
            self.targets.append(target)

    async def close(self) -> None:
        for target in self.targets:
            await target.close()
        for name in reversed(list(self.kits)):
            await self.kits[name].server.drain(0)

    # --- warm-up --------------------------------------------------------------------------

    def _metadata(self, tenant: str, *scopes: str, subject: str = "fuzz-setup"):
        return (("authorization", f"Bearer {self.minter.mint(subject, scopes, tenant)}"),)

    async def _call(self, service: str, method: str, request, metadata):
        kit = self.kits[service.split(".")[0]]
        target = next(t for t in self.targets if t.kit is kit)
        full = next(m for m in target.methods if m.short_service == service.split(".")[1]
                    and m.name == method)
        invoke = getattr(target.channel, full.kind)(
            full.path, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=GetMessageClass(full.output).FromString)
        if full.server_streaming:
            # the first message only (every warm-up feed has one); 60 s only ends a hang
            call = invoke(request, metadata=metadata, timeout=60)
            first = await call.read()
            call.cancel()
            return first
        return await invoke(request, metadata=metadata, timeout=60)

    async def warm_up(self, pool: Pool) -> list[str]:
        """Create real resources and list every collection into `pool`; returns the steps
        that failed (the run goes on without them)."""
        from skybridge.common.v1 import common_pb2
        from skybridge.linkbroker.v1 import contacts_pb2, linkbroker_pb2
        from skybridge.provisioning.v1 import provisioning_pb2 as prov
        from skybridge.provisioning.v1 import resources_pb2 as res
        from skybridge.threat.v1 import threat_pb2

        failed: list[str] = []
        P = "provisioning.ProvisioningService"
        counter = iter(range(10**6))

        def rid() -> str:
            return f"warm-{next(counter)}-{datetime.now(UTC).timestamp()}"

        async def step(what: str, service: str, method: str, request, metadata,
                       quiet: bool = False, tenant: str = "skybridge"):
            try:
                answer = await self._call(service, method, request, metadata)
            except grpc.aio.AioRpcError as error:
                if not quiet:
                    failed.append(f"{what}: {error.code().name} {error.details()}")
                return None
            pool.harvest(answer, tenant)
            return answer

        now = datetime.now(UTC)
        for i, tenant in enumerate(("contoso", "fabrikam")):
            who = self._metadata(tenant, "provisioning.write", "links.write", "contacts.write",
                                 subject=f"{tenant}-admin")
            made = await step("customer", P, "CreateCustomer", prov.CreateCustomerRequest(
                customer=res.Customer(display_name=f"{tenant} Ltd", sector=res.SECTOR_PRIVATE,
                                      country="US", contact_email=f"it@{tenant}.example.com"),
                request_id=rid()), who, tenant=tenant)
            if made is None:
                continue
            customer = made.customer.name
            plan = "plans/enterprise-100"
            made = await step("subscription", P, "CreateSubscription",
                              prov.CreateSubscriptionRequest(
                                  parent=customer, request_id=rid(),
                                  subscription=res.Subscription(plan=plan, quantity=5)), who,
                              tenant=tenant)
            if made is None:
                continue
            subscription = made.subscription.name
            await step("activate", P, "ActivateSubscription", prov.ActivateSubscriptionRequest(
                name=subscription, plan=plan, quantity=5, request_id=rid()), who, tenant=tenant)
            made = await step("terminal", P, "CreateTerminal", prov.CreateTerminalRequest(
                parent=customer, request_id=rid(), terminal=res.Terminal(
                    serial_number=f"UT-WARM-{i:04d}{now.microsecond:06d}",
                    subscription=subscription,
                    location=common_pb2.GeodeticPoint(latitude_deg=47.23 + i,
                                                      longitude_deg=-119.85))), who,
                              tenant=tenant)
            if made is None:
                continue
            terminal = made.terminal.name
            for method in ("ProvisionTerminal", "ActivateTerminal"):
                request = GetMessageClass(getattr(prov, f"{method}Request").DESCRIPTOR)(
                    name=terminal, request_id=rid())
                await step(method, P, method, request, who, tenant=tenant)
            start = timestamp_pb2.Timestamp()
            start.FromDatetime(now + timedelta(minutes=1))
            end = timestamp_pb2.Timestamp()
            end.FromDatetime(now + timedelta(minutes=11))
            await step("link", "linkbroker.LinkBrokerService", "RequestLink",
                       linkbroker_pb2.RequestLinkRequest(
                           customer=customer, terminal=terminal, region="westus2",
                           bandwidth_mbps=5.0, request_id=rid(),
                           window=common_pb2.TimeWindow(start_time=start, end_time=end)), who,
                       tenant=tenant)
            await step("contact profile", "linkbroker.GroundStationService",
                       "CreateContactProfile", contacts_pb2.CreateContactProfileRequest(
                           contact_profile_id=f"warm-profile-{i}", request_id=rid(),
                           contact_profile=contacts_pb2.ContactProfile(
                               display_name="warm", min_elevation_deg=10,
                               min_viable_contact_duration=duration_pb2.Duration(seconds=60))),
                       who, tenant=tenant)
        defense = self._metadata("skybridge", "defense")
        await step("asset", "threat.ThreatService", "CreateDefendedAsset",
                   threat_pb2.CreateDefendedAssetRequest(
                       request_id=rid(), defended_asset=threat_pb2.DefendedAsset(
                           display_name="Quincy", radius_m=1000.0,
                           location=common_pb2.GeodeticPoint(latitude_deg=47.23,
                                                             longitude_deg=-119.85))), defense)
        # every collection, as the operator and as each customer
        for target in self.targets:
            for method in target.methods:
                if not method.name.startswith("List") and method.name != "WatchEvents":
                    continue
                scopes = target.scopes.get(method.path) or ()
                for tenant in ("skybridge", "contoso", "fabrikam"):
                    request = GetMessageClass(method.input)()
                    await step(f"{method.name} as {tenant}",
                               f"{target.name}.{method.short_service}", method.name,
                               request, self._metadata(tenant, *sorted(scopes)), quiet=True,
                               tenant=tenant)
        return failed
