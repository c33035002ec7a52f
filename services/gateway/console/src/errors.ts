// Errors are shown in the page (the #errors banner) and kept in `state.errors`; nothing
// the console does ends in an uncaught exception or a console error.
import { Code, ConnectError } from "@connectrpc/connect";

import { byId, el } from "./dom";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb";
import { state } from "./state";

/** A human-readable line for anything thrown: a Connect error says its code and message. */
export function describe(error: unknown): string {
  if (error instanceof ConnectError) {
    const violations = badRequestFields(error);
    return `${Code[error.code]}: ${error.rawMessage}${violations ? ` (${violations})` : ""}`;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

/** The BadRequest violations of a Connect error, as `field: what is wrong; ...`. */
function badRequestFields(error: ConnectError): string {
  return error.findDetails(BadRequestSchema)
    .flatMap((detail) => detail.fieldViolations)
    .map((v) => `${v.field}: ${v.description}`)
    .join("; ");
}

/** Shows `error` in the banner, prefixed by what was being done. */
export function showError(context: string, error: unknown): void {
  const line = `${context}: ${describe(error)}`;
  state.errors.push(line);
  const banner = byId("errors");
  banner.append(el("div", { class: "error" }, line));
  banner.hidden = false;
}

/** True for the error a cancelled call ends with (navigation, sign-out, a new request). */
export function isCancel(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Canceled;
}

/** True for a call that ran out of its deadline (a stream held open for long). */
export function isDeadline(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.DeadlineExceeded;
}

/** Runs `task`, showing its failure instead of letting it escape. */
export async function guarded(context: string, task: () => Promise<void>): Promise<void> {
  try {
    await task();
  } catch (error) {
    if (!isCancel(error)) showError(context, error);
  }
}

/** Last line of defence: anything that still escapes is shown, not thrown at the page. */
export function installGlobalHandlers(): void {
  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    if (!isCancel(event.reason)) showError("unexpected", event.reason);
  });
  window.addEventListener("error", (event) => {
    event.preventDefault();
    showError("unexpected", event.error ?? event.message);
  });
}
