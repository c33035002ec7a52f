"""The servicer's terminals part: register, provision, activate, suspend, decommission."""

from __future__ import annotations

import math

from skybridge.provisioning.v1 import provisioning_pb2 as pb

from shared.auth import current_principal, requires
from shared.errors import Violations
from shared.paging import encode_token

from .. import domain
from ..app import terminals
from ..domain import validation
from ..domain.access import READERS, WRITERS
from .base import Base
from .checks import need
from .convert import terminal_pb
from .names import page_args, parse


class Terminals(Base):
    # --- terminals ------------------------------------------------------------------------

    @requires(*WRITERS)
    async def CreateTerminal(self, request, context):
        check = Violations()
        parent = parse(request.parent, "customer", "parent", check)
        t = request.terminal
        if not check.require(request.HasField("terminal") or None, "terminal"):
            check.raise_if_any()
        need(check, validation.serial_number(t.serial_number), "terminal.serial_number")
        sub = parse(t.subscription, "subscription", "terminal.subscription", check)
        if sub and parent and sub[0] != parent[0]:
            check.add("terminal.subscription", f"must be a subscription of {request.parent}")
        if check.require(t.HasField("location") or None, "terminal.location"):
            loc = t.location
            check.check(math.isfinite(loc.latitude_deg) and -90 <= loc.latitude_deg <= 90,
                        "terminal.location.latitude_deg", "must be between -90 and 90")
            check.check(math.isfinite(loc.longitude_deg) and -180 <= loc.longitude_deg <= 180,
                        "terminal.location.longitude_deg", "must be between -180 and 180")
            check.check(math.isfinite(loc.altitude_m) and -500 <= loc.altitude_m <= 10_000,
                        "terminal.location.altitude_m", "must be between -500 and 10000 m")
        location = (t.location.latitude_deg, t.location.longitude_deg, t.location.altitude_m)
        return await self._mutate(
            "CreateTerminal", request, check,
            lambda tx: terminals.create(tx, parent[0], sub[1], t.serial_number,
                                                  location),
            pb.CreateTerminalResponse, lambda d: pb.CreateTerminalResponse(terminal=terminal_pb(d)),
            lambda call: terminals.create_fast(self.store, call, parent[0], sub[1],
                                                         t.serial_number, location))

    @requires(*READERS)
    async def GetTerminal(self, request, context):
        c, t = parse(request.name, "terminal", "name")
        d = await self.store.get_terminal(domain.read_audience(current_principal()), c, t)
        return pb.GetTerminalResponse(terminal=terminal_pb(d))

    @requires(*READERS)
    async def ListTerminals(self, request, context):
        check = Violations()
        parent = parse(request.parent, "customer", "parent", check)
        after, size = page_args(request, f"terms:{request.parent}", check)
        check.raise_if_any()
        items, last = await self.store.list_terminals(
            domain.read_audience(current_principal()), parent[0], after, size)
        return pb.ListTerminalsResponse(
            terminals=[terminal_pb(d) for d in items],
            next_page_token=encode_token(f"terms:{request.parent}", last) if last else "")

    async def _terminal_call(self, method: str, action: str, request, response_type):
        check = Violations()
        ids = parse(request.name, "terminal", "name", check)
        return await self._mutate(
            method, request, check,
            lambda tx: terminals.transition(tx, ids[0], ids[1], action, request.etag),
            response_type, lambda d: response_type(terminal=terminal_pb(d)),
            lambda call: terminals.transition_fast(self.store, call, ids[0], ids[1], action,
                                                             request.etag))

    @requires(*WRITERS)
    async def ProvisionTerminal(self, request, context):
        return await self._terminal_call("ProvisionTerminal", "provision", request,
                                         pb.ProvisionTerminalResponse)

    @requires(*WRITERS)
    async def ActivateTerminal(self, request, context):
        return await self._terminal_call("ActivateTerminal", "activate", request,
                                         pb.ActivateTerminalResponse)

    @requires(*WRITERS)
    async def SuspendTerminal(self, request, context):
        return await self._terminal_call("SuspendTerminal", "suspend", request,
                                         pb.SuspendTerminalResponse)

    @requires(*WRITERS)
    async def DecommissionTerminal(self, request, context):
        return await self._terminal_call("DecommissionTerminal", "decommission", request,
                                         pb.DecommissionTerminalResponse)

