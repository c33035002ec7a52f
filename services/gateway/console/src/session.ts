// The signed-in bearer token: kept in sessionStorage (gone when the tab closes), sent on
// every call by the client's interceptor. Its scopes are read from the JWT's payload only
// to decide which views to offer: the services check the token, the console trusts nothing.

const KEY = "skybridge.token";

export interface Session {
  token: string;
  scopes: string[];
  tenant: string;
  subject: string;
  /** Expiry, UNIX seconds (0 when the token says none). */
  expires: number;
}

/** The stored session, or null when signed out or the stored token has expired. */
export function currentSession(): Session | null {
  const token = sessionStorage.getItem(KEY);
  if (!token) return null;
  const session = parseToken(token);
  if (session === null || (session.expires && session.expires * 1000 < Date.now())) {
    sessionStorage.removeItem(KEY);
    return null;
  }
  return session;
}

export function signIn(token: string): Session {
  const session = parseToken(token.trim());
  if (session === null) throw new Error("that is not a JWT (three base64url parts)");
  sessionStorage.setItem(KEY, session.token);
  return session;
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
}

export function hasScope(session: Session | null, ...scopes: string[]): boolean {
  return session !== null && scopes.some((s) => session.scopes.includes(s));
}

/** Reads a JWT's claims (not its signature: the services verify it). */
export function parseToken(token: string): Session | null {
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[1]) return null;
  try {
    const padded = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(padded + "=".repeat((4 - (padded.length % 4)) % 4))) as
      Record<string, unknown>;
    const raw = claims["scope"] ?? claims["scopes"] ?? claims["scp"];
    const scopes = Array.isArray(raw) ? raw.map(String)
      : typeof raw === "string" ? raw.split(/\s+/).filter(Boolean) : [];
    return {
      token,
      scopes,
      tenant: String(claims["tenant"] ?? ""),
      subject: String(claims["sub"] ?? ""),
      expires: typeof claims["exp"] === "number" ? claims["exp"] : 0,
    };
  } catch {
    return null;
  }
}
