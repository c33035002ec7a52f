// Sign-in: paste a bearer token, or (when the gateway says GET /dev/tokens is enabled, as in
// `make run`) choose scopes and mint a development token. The token goes to sessionStorage.
import { devTokensEnabled, mintDevToken } from "../client";
import { byId, el, field, input, section } from "../dom";
import { guarded } from "../errors";
import { signIn } from "../session";

/** The scopes the services know (see each service's proto comments). */
export const SCOPES: [string, string][] = [
  ["orbit.read", "the catalog and propagation"],
  ["links.read", "estimate paths, regions, gateways"],
  ["links.write", "request and release links"],
  ["contacts.read", "ground stations and contacts"],
  ["contacts.write", "reserve contacts"],
  ["provisioning.read", "the tenant's customers, subscriptions, terminals"],
  ["provisioning.write", "buy and change subscriptions"],
  ["partner", "a co-sell partner's customers"],
  ["operator", "provisioning operations: every customer"],
  ["linkbroker.operator", "every tenant's links and contacts"],
  ["defense", "missile tracks and alerts"],
];
const DEFAULT_SCOPES = new Set(["orbit.read", "links.read", "contacts.read", "provisioning.read"]);

export function signInSection(): HTMLElement {
  return section("signin", "Sign in",
    el("form", { id: "token-form", class: "form" },
      field("bearer token", el("textarea", { name: "token", rows: "3", placeholder: "eyJ…" })),
      el("button", { type: "submit", id: "token-submit" }, "use this token")),
    el("form", { id: "dev-form", class: "form", hidden: "" },
      el("h3", {}, "Development token (make run mode)"),
      field("subject", input("subject", "operator@skybridge.dev")),
      field("tenant", input("tenant", "contoso")),
      el("fieldset", { id: "dev-scopes" }, el("legend", {}, "scopes"),
        ...SCOPES.map(([scope, what]) => el("label", { class: "scope" },
          el("input", { type: "checkbox", name: "scope", value: scope,
                        ...(DEFAULT_SCOPES.has(scope) ? { checked: "" } : {}) }),
          ` ${scope} `, el("small", {}, what)))),
      el("button", { type: "submit", id: "dev-submit" }, "mint and sign in")));
}

/** Wires the forms; `onSignedIn` runs once a token is stored. */
export function startSignIn(onSignedIn: () => void): void {
  const tokenForm = byId<HTMLFormElement>("token-form");
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void guarded("signing in", async () => {
      signIn(String(new FormData(tokenForm).get("token") ?? ""));
      onSignedIn();
    });
  });
  const devForm = byId<HTMLFormElement>("dev-form");
  devForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(devForm);
    void guarded("minting a development token", async () => {
      const token = await mintDevToken({
        subject: String(data.get("subject") ?? ""),
        tenant: String(data.get("tenant") ?? ""),
        scopes: data.getAll("scope").map(String),
        ttlSeconds: 3600,
      });
      signIn(token);
      onSignedIn();
    });
  });
  void devTokensEnabled().then((enabled) => {
    devForm.hidden = !enabled;
    byId("signin").dataset["devTokens"] = String(enabled);
  });
}
