// One Connect transport to the gateway (same origin as the page), binary protobuf, with the
// signed-in bearer token on every call; a client per service; and the gateway's
// development-token endpoint.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

import { GroundStationService } from "./gen/skybridge/linkbroker/v1/contacts_pb";
import { LinkBrokerService } from "./gen/skybridge/linkbroker/v1/linkbroker_pb";
import { OrbitService } from "./gen/skybridge/orbit/v1/orbit_pb";
import { ProvisioningService } from "./gen/skybridge/provisioning/v1/provisioning_pb";
import { ThreatService } from "./gen/skybridge/threat/v1/threat_pb";
import { currentSession } from "./session";

/** The gateway's base URL: the folder the console was served from. */
export function gatewayBase(): string {
  const url = new URL(".", window.location.href);
  return url.href.replace(/\/$/, "");
}

const bearer: Interceptor = (next) => async (request) => {
  const session = currentSession();
  if (session !== null) request.header.set("Authorization", `Bearer ${session.token}`);
  return next(request);
};

// Binary protobuf: Propagate's float64 columns travel as raw bytes (JSON would carry them
// as base64 text, a third larger and decoded by hand).
const transport = createConnectTransport({
  baseUrl: gatewayBase(),
  useBinaryFormat: true,
  interceptors: [bearer],
});

export interface Clients {
  orbit: Client<typeof OrbitService>;
  linkbroker: Client<typeof LinkBrokerService>;
  contacts: Client<typeof GroundStationService>;
  provisioning: Client<typeof ProvisioningService>;
  threat: Client<typeof ThreatService>;
}

export const clients: Clients = {
  orbit: createClient(OrbitService, transport),
  linkbroker: createClient(LinkBrokerService, transport),
  contacts: createClient(GroundStationService, transport),
  provisioning: createClient(ProvisioningService, transport),
  threat: createClient(ThreatService, transport),
};

/** Calls `page(token)` until the last page; `limit` bounds the pages fetched. */
export async function allPages<T>(
  page: (token: string) => Promise<{ items: T[]; next: string }>, limit = 1000,
): Promise<T[]> {
  const out: T[] = [];
  let token = "";
  for (let i = 0; i < limit; i++) {
    const { items, next } = await page(token);
    out.push(...items);
    if (!next) return out;
    token = next;
  }
  return out;
}

// ---------------------------------------------------------------- development tokens

/** Whether the gateway mints development tokens (`make run` mode only). */
export async function devTokensEnabled(): Promise<boolean> {
  try {
    const answer = await fetch(`${gatewayBase()}/dev/tokens`, { method: "GET" });
    if (!answer.ok) return false;
    const body = (await answer.json()) as { enabled?: unknown };
    return body.enabled === true;
  } catch {
    return false;
  }
}

export interface TokenRequest {
  subject: string;
  tenant: string;
  scopes: string[];
  ttlSeconds: number;
}

/** Mints a development token through the gateway. */
export async function mintDevToken(request: TokenRequest): Promise<string> {
  const answer = await fetch(`${gatewayBase()}/dev/tokens`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(request),
  });
  const text = await answer.text();
  if (!answer.ok) throw new Error(`the gateway refused the token (${answer.status}): ${text}`);
  const body = JSON.parse(text) as { token?: unknown };
  if (typeof body.token !== "string") throw new Error("the gateway answered no token");
  return body.token;
}
