"""The provisioning servicer: proto <-> domain and input validation only.

Scopes and tenant rules
=======================

A token carries scopes and a tenant (see shared.auth). The provisioning service knows:

| scope | who holds it | what it allows |
|---|---|---|
| `provisioning.read` | a customer's users and apps | read the customers whose `tenant` is the token's tenant, and their subscriptions, operations, terminals, audit records and events; read partners and plans |
| `provisioning.write` | a customer's admins | the above, plus create itself (its tenant is the token's), buy subscriptions, activate them, change plan or quantity, cancel, register terminals and change their state |
| `partner` | a co-sell partner; the token's tenant is the partner id (`microsoft`, `spacex`) | its own referral records (create, read, update); customers it manages (created by it, or sourced by it through a Won referral) with everything `provisioning.write` can do to them, plus suspend and reinstate their subscriptions; their events and audit records |
| `operator` | Skybridge operations | everything: partners and plans (create, update), every customer and referral, suspend and reinstate, all events and audit records |
| `provisioning.entitlements` | the link broker's service token | CheckEntitlement and BatchCheckEntitlements only |
| `provisioning.events` | services following the feed | WatchEvents over all customers |

A resource the caller may not see answers NOT_FOUND, exactly like one that does not exist,
so a customer's token can never learn whether another customer's record exists.
Every mutating call requires a `request_id` (idempotency key, scoped to the token's tenant,
kept at least 24 hours): a retry returns the first answer, the same key with a different
request is INVALID_ARGUMENT (reason REQUEST_ID_REUSED).
"""

from __future__ import annotations

from skybridge.provisioning.v1 import provisioning_pb2_grpc

from .checks import REQUEST_RULES
from .cosell import CoSell
from .feeds import Feeds
from .subscriptions import Subscriptions
from .terminals import Terminals


class ProvisioningServicer(CoSell, Subscriptions, Terminals, Feeds,
                           provisioning_pb2_grpc.ProvisioningServiceServicer):
    """Every RPC of skybridge.provisioning.v1.ProvisioningService: validation and proto <->
    record translation; the use cases are `app/`, the reads the store's."""

    request_rules = REQUEST_RULES
