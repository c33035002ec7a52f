// The Skybridge console: a globe and a side panel of views over the gateway's Connect API.
import { byId, el } from "./dom";
import { guarded, installGlobalHandlers } from "./errors";
import { createGlobe, type Globe } from "./globe";
import { currentSession, signOut, type Session } from "./session";
import { mark, state } from "./state";
import {
  ConstellationFeed,
  constellationSection,
  startConstellation,
  startEphemerisExport,
  type Constellation,
} from "./views/constellation";
import { contactsSection, startContacts } from "./views/contacts";
import { cosellSection, startCosell } from "./views/cosell";
import { defenseSection, startDefense } from "./views/defense";
import { groundSection, startGround } from "./views/ground";
import { linkSection, startLink } from "./views/link";
import { signInSection, startSignIn } from "./views/signin";
import { hasScope } from "./session";
import "./style.css";

installGlobalHandlers();
mark("script");

function start(): void {
  const session = currentSession();
  if (session === null) {
    createGlobe(byId("globe"));
    showSignedOut();
    return;
  }
  showSignedIn(session);
}

function showSignedOut(): void {
  state.scopes = [];
  byId("who").textContent = "signed out";
  byId("panel").replaceChildren(signInSection());
  startSignIn(() => window.location.reload());
}

function showSignedIn(session: Session): void {
  state.scopes = session.scopes;
  byId("who").replaceChildren(
    `${session.subject} · tenant ${session.tenant} · `,
    el("span", { id: "scopes" }, session.scopes.join(" ")), " ",
    el("button", { id: "sign-out", type: "button" }, "sign out"));
  byId("sign-out").addEventListener("click", () => {
    signOut();
    window.location.reload();
  });
  const panel = byId("panel");
  const canOrbit = hasScope(session, "orbit.read");
  panel.replaceChildren(
    canOrbit ? constellationSection()
      : el("section", { id: "constellation", class: "view" }, el("h2", {}, "Constellation"),
          el("p", { class: "muted" }, "needs orbit.read")),
    groundSection(), linkSection(session), defenseSection(session), contactsSection(session),
    cosellSection(session));
  const views = new AbortController();
  window.addEventListener("pagehide", () => views.abort());
  // An expired token is refused by every service: back to the sign-in page when it lapses.
  if (session.expires) {
    const left = session.expires * 1000 - Date.now();
    window.setTimeout(() => {
      signOut();
      window.location.reload();
    }, Math.max(left, 0));
  }
  // The catalog's first positions are asked for before Cesium starts (it takes a while).
  const feed = canOrbit ? new ConstellationFeed(views.signal) : null;
  feed?.refill(Date.now() / 1000);
  feed?.listCatalog();
  const globe: Globe = createGlobe(byId("globe"));
  void guarded("starting the views", async () => {
    const constellation: Constellation | null = feed
      ? startConstellation(globe, feed, views.signal) : null;
    if (feed) startEphemerisExport(globe, views.signal);
    const ground = startGround(globe, session, views.signal);
    startLink(globe, session, constellation, ground, views.signal);
    startDefense(globe, session, views.signal);
    startContacts(session, views.signal);
    startCosell(session, views.signal);
  });
}

start();
