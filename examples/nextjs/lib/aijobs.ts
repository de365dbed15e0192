// aijobs from route handlers: a client signed in as the user who made the request, and the
// API's refusals passed on to the browser as they came (problem+json, status, Retry-After).
import { cookies } from "next/headers";
import { AijobsClient, AijobsError, NetworkError } from "@aijobs/client";
import { supabaseAccessToken } from "./supabase-token";

/** Where aijobs runs, e.g. https://jobs.example.com (server-side only: no NEXT_PUBLIC_). */
function apiUrl(): string {
  const url = process.env.AIJOBS_URL;
  if (!url) throw new Error("AIJOBS_URL is not set");
  return url;
}

/** A client that calls aijobs as the signed-in user, or null when nobody is signed in. */
export async function aijobsFor(request: Request): Promise<AijobsClient | null> {
  const token = supabaseAccessToken(request.headers, (await cookies()).getAll());
  return token ? new AijobsClient({ baseUrl: apiUrl(), token }) : null;
}

const PROBLEM = "application/problem+json";

export function signedOut(): Response {
  return Response.json(
    { type: "about:blank", title: "Unauthorized", status: 401, detail: "sign in first" },
    { status: 401, headers: { "Content-Type": PROBLEM } },
  );
}

/** 422 for a request body this app cannot read, naming the field, as aijobs words its own. */
export function invalidRequest(field: string, reason: string): Response {
  return Response.json(
    { type: "about:blank", title: "Unprocessable Content", status: 422, detail: `${field}: ${reason}`, errors: [{ field, reason }] },
    { status: 422, headers: { "Content-Type": PROBLEM } },
  );
}

/** The answer for an error thrown by the client: aijobs' own problem, or a 502 when there was none. */
export function problemResponse(error: unknown): Response {
  if (error instanceof AijobsError) {
    const headers: Record<string, string> = { "Content-Type": PROBLEM };
    if (error.retryAfter !== null) headers["Retry-After"] = String(error.retryAfter);
    return Response.json(error.problem, { status: error.status, headers });
  }
  const detail = error instanceof NetworkError ? "aijobs did not answer" : "unexpected error";
  return Response.json(
    { type: "about:blank", title: "Bad Gateway", status: 502, detail },
    { status: 502, headers: { "Content-Type": PROBLEM } },
  );
}
