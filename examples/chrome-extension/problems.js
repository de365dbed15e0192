// What to tell the user when a call fails: the API's own problem detail, in words.
import { AijobsError, InsufficientCreditsError, NetworkError, UnauthorizedError, ValidationError } from "./lib/aijobs-client.js";
import { ORIGIN } from "./settings.js";

export function describeError(error, apiUrl) {
  if (error instanceof UnauthorizedError) {
    return `Signed out: ${error.problem.detail ?? "your token was refused"}. Open Settings and paste a fresh token.`;
  }
  if (error instanceof InsufficientCreditsError) {
    return `No credits left: ${error.problem.detail ?? `balance ${error.balance}`}.`;
  }
  if (error instanceof ValidationError) {
    const fields = error.fields.map((f) => `• ${f.field.replace(/^body\.payload\./, "")}: ${f.reason}`);
    if (!fields.length) return `This review cannot be sent as it is: ${error.problem.detail ?? "invalid"}`;
    return ["This review cannot be sent as it is:", ...fields, "Edit it above and try again."].join("\n");
  }
  if (error instanceof AijobsError) {
    const wait = error.retryAfter !== null ? ` Try again in ${error.retryAfter} s.` : "";
    return `${error.problem.title}: ${error.problem.detail ?? ""}${wait}`;
  }
  if (error instanceof NetworkError) {
    return `Could not reach aijobs at ${apiUrl}. Is it running, and does its CORS_ORIGINS include ${ORIGIN}?`;
  }
  return String(error?.message ?? error);
}
