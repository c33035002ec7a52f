"""The servicer's subscriptions part: buy, activate, suspend, reinstate, change plan or
quantity, cancel, and their operations."""

from __future__ import annotations

from collections.abc import Callable

from skybridge.provisioning.v1 import provisioning_pb2 as pb

from shared.auth import current_principal, requires
from shared.errors import Violations
from shared.paging import encode_token

from .. import domain
from ..app import subscriptions
from ..domain import validation
from ..domain.access import OPERATOR, PARTNER, READERS, WRITERS
from .base import Base
from .checks import need, need_text
from .convert import operation_pb, subscription_pb
from .names import page_args, parse


class Subscriptions(Base):
    # --- subscriptions --------------------------------------------------------------------

    @requires(*WRITERS)
    async def CreateSubscription(self, request, context):
        check = Violations()
        parent = parse(request.parent, "customer", "parent", check)
        s = request.subscription
        if check.require(request.HasField("subscription") or None, "subscription"):
            plan = parse(s.plan, "plan", "subscription.plan", check)
            check.check(s.quantity > 0, "subscription.quantity", "must be at least 1")
            need_text(check, s.display_name, "subscription.display_name", required=False)
        return await self._mutate(
            "CreateSubscription", request, check,
            lambda tx: subscriptions.create(tx, parent[0], plan[0], s.quantity,
                                                      s.display_name.strip()),
            pb.CreateSubscriptionResponse,
            lambda d: pb.CreateSubscriptionResponse(subscription=subscription_pb(d)),
            lambda call: subscriptions.create_fast(self.store, call, parent[0], plan[0],
                                                             s.quantity, s.display_name.strip()))

    @requires(*READERS)
    async def GetSubscription(self, request, context):
        c, s = parse(request.name, "subscription", "name")
        d = await self.store.get_subscription(domain.read_audience(current_principal()), c, s)
        return pb.GetSubscriptionResponse(subscription=subscription_pb(d))

    @requires(*READERS)
    async def ListSubscriptions(self, request, context):
        check = Violations()
        parent = parse(request.parent, "customer", "parent", check)
        after, size = page_args(request, f"subs:{request.parent}", check)
        check.raise_if_any()
        items, last = await self.store.list_subscriptions(
            domain.read_audience(current_principal()), parent[0], after, size)
        return pb.ListSubscriptionsResponse(
            subscriptions=[subscription_pb(d) for d in items],
            next_page_token=encode_token(f"subs:{request.parent}", last) if last else "")

    def _subscription_call(self, method: str, request, response_type, work,
                           check: Violations | None = None, fast: Callable | None = None):
        check = check if check is not None else Violations()
        ids = parse(request.name, "subscription", "name", check)
        return self._mutate(
            method, request, check, lambda tx: work(tx, *ids), response_type,
            lambda d: response_type(subscription=subscription_pb(d)),
            fast and (lambda call: fast(call, *ids)))

    @requires(*WRITERS)
    async def ActivateSubscription(self, request, context):
        check = Violations()
        plan = parse(request.plan, "plan", "plan", check)
        check.check(request.quantity > 0, "quantity", "must be at least 1")
        return await self._subscription_call(
            "ActivateSubscription", request, pb.ActivateSubscriptionResponse,
            lambda tx, c, s: subscriptions.activate(tx, c, s, plan[0],
                                                              request.quantity), check,
            lambda call, c, s: subscriptions.activate_fast(self.store, call, c, s, plan[0],
                                                                     request.quantity))

    @requires(PARTNER, OPERATOR)
    async def SuspendSubscription(self, request, context):
        check = Violations()
        need(check, validation.optional_text(request.reason, validation.MAX_REASON), "reason")
        return await self._subscription_call(
            "SuspendSubscription", request, pb.SuspendSubscriptionResponse,
            lambda tx, c, s: subscriptions.suspend(tx, c, s, request.reason), check)

    @requires(PARTNER, OPERATOR)
    async def ReinstateSubscription(self, request, context):
        return await self._subscription_call(
            "ReinstateSubscription", request, pb.ReinstateSubscriptionResponse,
            lambda tx, c, s: subscriptions.reinstate(tx, c, s))

    async def _operation_call(self, method: str, request, response_type, kind: str,
                              check: Violations, **target):
        ids = parse(request.name, "subscription", "name", check)
        answer = await self._mutate(
            method, request, check,
            lambda tx: subscriptions.start_operation(tx, ids[0], ids[1], kind, **target),
            response_type, lambda d: response_type(operation=operation_pb(d)))
        return answer

    @requires(*WRITERS)
    async def ChangeSubscriptionPlan(self, request, context):
        check = Violations()
        plan = parse(request.plan, "plan", "plan", check)
        return await self._operation_call(
            "ChangeSubscriptionPlan", request, pb.ChangeSubscriptionPlanResponse,
            "CHANGE_PLAN", check, plan_id=plan[0] if plan else "")

    @requires(*WRITERS)
    async def ChangeSubscriptionQuantity(self, request, context):
        check = Violations()
        check.check(request.quantity > 0, "quantity", "must be at least 1")
        return await self._operation_call(
            "ChangeSubscriptionQuantity", request, pb.ChangeSubscriptionQuantityResponse,
            "CHANGE_QUANTITY", check, quantity=request.quantity)

    @requires(*WRITERS)
    async def CancelSubscription(self, request, context):
        check = Violations()
        need(check, validation.optional_text(request.reason, validation.MAX_REASON), "reason")
        return await self._operation_call(
            "CancelSubscription", request, pb.CancelSubscriptionResponse, "CANCEL", check,
            reason=request.reason)

    @requires(*READERS)
    async def GetSubscriptionOperation(self, request, context):
        c, s, o = parse(request.name, "operation", "name")
        d = await self.store.get_operation(domain.read_audience(current_principal()), c, s, o)
        return pb.GetSubscriptionOperationResponse(operation=operation_pb(d))

    @requires(*READERS)
    async def ListSubscriptionOperations(self, request, context):
        check = Violations()
        parent = parse(request.parent, "subscription", "parent", check)
        after, size = page_args(request, f"ops:{request.parent}", check)
        check.raise_if_any()
        items, last = await self.store.list_operations(
            domain.read_audience(current_principal()), parent[0], parent[1], after, size)
        return pb.ListSubscriptionOperationsResponse(
            operations=[operation_pb(d) for d in items],
            next_page_token=encode_token(f"ops:{request.parent}", last) if last else "")

