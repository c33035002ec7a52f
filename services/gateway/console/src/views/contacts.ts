// Ground-station contacts: the tenant's reserved contacts (ListContacts) and, for a chosen
// spacecraft, station and profile, the passes a contact could be reserved in
// (ListAvailableContacts), both in tables.
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

import { allPages, clients } from "../client";
import { byId, el, field, fillTable, input, section, select } from "../dom";
import { guarded } from "../errors";
import { Contact_State } from "../gen/skybridge/linkbroker/v1/contacts_pb";
import { hasScope, type Session } from "../session";
import { state } from "../state";

const READ = ["contacts.read", "contacts.write", "linkbroker.operator"];

export function contactsSection(session: Session): HTMLElement {
  if (!hasScope(session, ...READ)) {
    return section("contacts", "Ground-station contacts", el("p", { class: "muted" }, "needs contacts.read"));
  }
  return section("contacts", "Ground-station contacts",
    el("h3", {}, "Reserved contacts"),
    el("table", { id: "contacts-table", class: "table" }),
    el("h3", {}, "Available contacts"),
    el("form", { id: "available-form", class: "form" },
      field("spacecraft", input("spacecraft", "", { placeholder: "satellites/900001" })),
      field("station", select("station", [])),
      field("profile", select("profile", [])),
      field("hours", input("hours", "12", { type: "number", min: "1", max: "168" })),
      el("button", { type: "submit" }, "list passes")),
    el("table", { id: "available-table", class: "table" }));
}

export function time(stamp: Timestamp | undefined): string {
  return stamp ? timestampDate(stamp).toISOString().replace("T", " ").slice(0, 19) : "";
}

export function startContacts(session: Session, signal: AbortSignal): void {
  if (!hasScope(session, ...READ)) return;
  void guarded("listing contacts (ListContacts)", async () => {
    const contacts = await allPages(async (pageToken) => {
      const page = await clients.contacts.listContacts({ pageSize: 1000, pageToken }, { signal });
      return { items: page.contacts, next: page.nextPageToken };
    }, 5);
    state.contactRows = contacts.length;
    fillTable(byId<HTMLTableElement>("contacts-table"),
      ["contact", "spacecraft", "station", "antenna", "start", "end", "max elev °", "state"],
      contacts.map((c) => [c.name, c.spacecraft, c.groundStation, c.antennaIndex,
        time(c.startTime), time(c.endTime), c.maxElevationDeg, Contact_State[c.state]]),
      "no contacts reserved");
  });
  const form = byId<HTMLFormElement>("available-form");
  void guarded("listing ground stations and profiles", async () => {
    const [stations, profiles] = await Promise.all([
      clients.contacts.listGroundStations({ pageSize: 1000 }, { signal }),
      clients.contacts.listContactProfiles({ pageSize: 1000 }, { signal }),
    ]);
    (form.elements.namedItem("station") as HTMLSelectElement).replaceChildren(
      ...stations.groundStations.map((s) => el("option", { value: s.name }, s.displayName || s.name)));
    (form.elements.namedItem("profile") as HTMLSelectElement).replaceChildren(
      ...(profiles.contactProfiles.length
        ? profiles.contactProfiles.map((p) => el("option", { value: p.name }, p.displayName || p.name))
        : [el("option", { value: "" }, "no profile (create one with contacts.write)")]));
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    void guarded("listing available contacts (ListAvailableContacts)", async () => {
      const now = Date.now();
      const answer = await clients.contacts.listAvailableContacts({
        spacecraft: String(data.get("spacecraft") ?? ""),
        groundStation: String(data.get("station") ?? ""),
        contactProfile: String(data.get("profile") ?? ""),
        window: { startTime: timestampFromMs(now),
                  endTime: timestampFromMs(now + Number(data.get("hours")) * 3_600_000) },
        pageSize: 200,
      }, { signal });
      fillTable(byId<HTMLTableElement>("available-table"),
        ["start", "end", "max elev °", "free antennas", "reservable"],
        answer.availableContacts.map((c) => [time(c.startTime), time(c.endTime),
          c.maxElevationDeg, c.freeAntennaIndices.join(", "), c.reservable ? "yes" : "no"]),
        "no passes in the window");
    });
  });
}
