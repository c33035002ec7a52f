// Co-sell: the customers the token may see, their subscriptions and terminals, in tables
// (ProvisioningService ListCustomers, ListSubscriptions, ListTerminals).
import { allPages, clients } from "../client";
import { byId, el, fillTable, section } from "../dom";
import { guarded } from "../errors";
import { Sector } from "../gen/skybridge/provisioning/v1/resources_pb";
import { Subscription_State, Terminal_State } from "../gen/skybridge/provisioning/v1/resources_pb";
import { hasScope, type Session } from "../session";
import { state } from "../state";

const READ = ["provisioning.read", "provisioning.write", "partner", "operator"];
/** Customers whose subscriptions and terminals are listed (one call each). */
const DETAIL_LIMIT = 50;

export function cosellSection(session: Session): HTMLElement {
  if (!hasScope(session, ...READ)) {
    return section("cosell", "Co-sell", el("p", { class: "muted" }, "needs provisioning.read, partner or operator"));
  }
  return section("cosell", "Co-sell",
    el("h3", {}, "Customers"), el("table", { id: "customers-table", class: "table" }),
    el("h3", {}, "Subscriptions"), el("table", { id: "subscriptions-table", class: "table" }),
    el("h3", {}, "Terminals"), el("table", { id: "terminals-table", class: "table" }));
}

export function startCosell(session: Session, signal: AbortSignal): void {
  if (!hasScope(session, ...READ)) return;
  void guarded("listing customers (ListCustomers)", async () => {
    const customers = await allPages(async (pageToken) => {
      const page = await clients.provisioning.listCustomers({ pageSize: 1000, pageToken }, { signal });
      return { items: page.customers, next: page.nextPageToken };
    }, 10);
    state.customerRows = customers.length;
    fillTable(byId<HTMLTableElement>("customers-table"),
      ["customer", "name", "sector", "country", "tenant", "partner"],
      customers.map((c) => [c.name, c.displayName, Sector[c.sector], c.country, c.tenant,
        c.sourcePartner]), "no customers");
    const shown = customers.slice(0, DETAIL_LIMIT);
    const details = await Promise.all(shown.map(async (c) => {
      const [subs, terminals] = await Promise.all([
        clients.provisioning.listSubscriptions({ parent: c.name, pageSize: 100 }, { signal }),
        clients.provisioning.listTerminals({ parent: c.name, pageSize: 100 }, { signal }),
      ]);
      return { customer: c.name, subs: subs.subscriptions, terminals: terminals.terminals };
    }));
    fillTable(byId<HTMLTableElement>("subscriptions-table"),
      ["subscription", "plan", "quantity", "terminals", "state"],
      details.flatMap((d) => d.subs.map((s) => [s.name, s.plan, s.quantity, s.terminalCount,
        Subscription_State[s.state]])), "no subscriptions");
    fillTable(byId<HTMLTableElement>("terminals-table"),
      ["terminal", "serial", "subscription", "lat °", "lon °", "state"],
      details.flatMap((d) => d.terminals.map((t) => [t.name, t.serialNumber, t.subscription,
        t.location?.latitudeDeg, t.location?.longitudeDeg, Terminal_State[t.state]])),
      "no terminals");
  });
}
