"""BatchCheckEntitlements and the client that sends concurrent checks together."""

from __future__ import annotations

import asyncio

import grpc
from skybridge.provisioning.v1 import provisioning_pb2 as pb

from shared.clients.entitlements import EntitlementChecker
from shared.status import details_of
from tests.provisioning.conftest import failure, new_customer, new_subscription, new_terminal, rid

REASON = pb.EntitlementReason


async def active_terminals(stub, who, n: int):
    customer = await new_customer(stub, who)
    sub = await new_subscription(stub, who, customer.name, quantity=n)
    terminals = []
    for k in range(n):
        terminal = await new_terminal(stub, who, customer.name, sub.name, f"UT-B-{k:04d}")
        for verb in ("ProvisionTerminal", "ActivateTerminal"):
            await getattr(stub, verb)(getattr(pb, f"{verb}Request")(
                name=terminal.name, request_id=rid()), metadata=who.customer())
        terminals.append(terminal)
    return customer, terminals


def check_of(customer, terminal_name: str, mbps=50.0, region="westeurope"):
    return pb.CheckEntitlementRequest(customer=customer.name, terminal=terminal_name,
                                      bandwidth_mbps=mbps, target_region=region)


async def test_batch_answers_each_check_as_the_single_check_does(prov, who):
    kit, stub = prov
    customer, terminals = await active_terminals(stub, who, 2)
    await stub.SuspendTerminal(pb.SuspendTerminalRequest(name=terminals[1].name,
                                                         request_id=rid()),
                               metadata=who.customer())
    checks = [check_of(customer, terminals[0].name),
              check_of(customer, terminals[1].name),
              check_of(customer, terminals[0].name, mbps=10_000),
              check_of(customer, terminals[0].name, region="mars-north"),
              check_of(customer, f"{customer.name}/terminals/nope"),
              pb.CheckEntitlementRequest(customer="customers/nobody",
                                         terminal="customers/nobody/terminals/x",
                                         bandwidth_mbps=1, target_region="eastus")]
    batch = await stub.BatchCheckEntitlements(
        pb.BatchCheckEntitlementsRequest(checks=checks), metadata=who.broker())
    assert len(batch.results) == len(checks)
    singles = []
    for check in checks:
        try:
            singles.append(await stub.CheckEntitlement(check, metadata=who.broker()))
        except grpc.aio.AioRpcError as error:
            singles.append(error.code())
    for result, single in zip(batch.results, singles, strict=True):
        if isinstance(single, grpc.StatusCode):
            assert result.HasField("error") and result.error.code == single.value[0]
        else:
            assert result.answer == single
    reasons = [r.answer.reason if r.HasField("answer") else None for r in batch.results]
    assert reasons[:2] == [REASON.ENTITLEMENT_REASON_ENTITLED,
                           REASON.ENTITLEMENT_REASON_TERMINAL_NOT_ACTIVE]
    assert reasons[4:] == [REASON.ENTITLEMENT_REASON_TERMINAL_NOT_FOUND,
                           REASON.ENTITLEMENT_REASON_CUSTOMER_NOT_FOUND]
    assert batch.results[0].answer.customer_tenant == "contoso"


async def test_an_invalid_check_fails_alone_and_names_its_field(prov, who):
    kit, stub = prov
    customer, terminals = await active_terminals(stub, who, 1)
    batch = await stub.BatchCheckEntitlements(pb.BatchCheckEntitlementsRequest(checks=[
        check_of(customer, terminals[0].name),
        pb.CheckEntitlementRequest(customer="customers/x", terminal="terminals/y",
                                   bandwidth_mbps=float("nan"), target_region=""),
        check_of(customer, terminals[0].name)]), metadata=who.broker())
    assert batch.results[0].answer.allowed and batch.results[2].answer.allowed
    error = batch.results[1].error
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # The client turns it into the error CheckEntitlement would have raised.
    from shared.clients.entitlements import _error_of

    fields = {v.field for v in details_of(_error_of(error)).violations}
    assert fields == {"checks[1].terminal", "checks[1].bandwidth_mbps",
                      "checks[1].target_region"}


async def test_a_batch_is_one_to_five_hundred_checks_and_needs_the_entitlement_scope(prov, who):
    kit, stub = prov
    customer, terminals = await active_terminals(stub, who, 1)
    for checks in ([], [check_of(customer, terminals[0].name)] * 501):
        error = await failure(stub.BatchCheckEntitlements(
            pb.BatchCheckEntitlementsRequest(checks=checks), metadata=who.broker()))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in details_of(error).violations] == ["checks"]
    denied = await failure(stub.BatchCheckEntitlements(pb.BatchCheckEntitlementsRequest(
        checks=[check_of(customer, terminals[0].name)]), metadata=who.customer()))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_concurrent_checks_leave_together_and_see_a_suspension_at_once(prov, who):
    kit, stub = prov
    customer, terminals = await active_terminals(stub, who, 3)
    checker = EntitlementChecker(stub, metadata=who.broker(), max_in_flight=1)
    requests = [check_of(customer, terminals[k % 3].name) for k in range(60)]
    answers = await asyncio.gather(*(checker.check(r) for r in requests))
    assert all(a.allowed for a in answers)
    assert checker.checks == 60
    # The 60 were asked for in one go: they leave in one call.
    assert checker.calls == 1
    # An idle checker sends a check at once, alone.
    for request in requests[:3]:
        assert (await checker.check(request)).allowed
    assert checker.calls == 4
    await stub.SuspendTerminal(pb.SuspendTerminalRequest(name=terminals[0].name,
                                                         request_id=rid()),
                               metadata=who.customer())
    after = await asyncio.gather(*(checker.check(r) for r in requests[:3]))
    assert [a.allowed for a in after] == [False, True, True]
    assert after[0].reason == REASON.ENTITLEMENT_REASON_TERMINAL_NOT_ACTIVE


async def test_a_failed_call_fails_every_check_it_carried(prov, who):
    kit, stub = prov
    customer, terminals = await active_terminals(stub, who, 1)
    checker = EntitlementChecker(stub, metadata=who.customer())  # not the broker's scope
    results = await asyncio.gather(*(checker.check(check_of(customer, terminals[0].name))
                                     for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, grpc.aio.AioRpcError)
               and r.code() == grpc.StatusCode.PERMISSION_DENIED for r in results)
    # A caller that gives up does not take the others' answers with it.
    checker = EntitlementChecker(stub, metadata=who.broker(), max_in_flight=1)
    first = asyncio.ensure_future(checker.check(check_of(customer, terminals[0].name)))
    quitter = asyncio.ensure_future(checker.check(check_of(customer, terminals[0].name)))
    stayer = asyncio.ensure_future(checker.check(check_of(customer, terminals[0].name)))
    # The quitter gives up while its check is on the wire (the one call that carries all
    # three): wait for that call to be sent rather than for one turn of the loop.
    while checker.calls == 0:  # noqa: ASYNC110 - a condition, not a clock
        await asyncio.sleep(0)
    quitter.cancel()
    assert (await first).allowed and (await stayer).allowed
    assert quitter.cancelled()
