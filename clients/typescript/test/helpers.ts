// What every test file shares: the API the Python test started (its URL, the JWT secret it
// verifies with, its service key), a fresh funded user per test, and tokens minted like
// Supabase's (HS256), so each test's jobs, caps and balance are its own.
import { createHmac, randomUUID } from "node:crypto";
import { AijobsClient } from "@aijobs/client";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: these tests run from tests/e2e/test_typescript_client.py`);
  return value;
}

export const API_URL = env("AIJOBS_URL");
const JWT_SECRET = env("AIJOBS_JWT_SECRET");
const SERVICE_KEY = env("AIJOBS_SERVICE_KEY");
/** A review text the test database refuses with SQLSTATE 40001 (a real rolled-back request). */
export const CONFLICT_TEXT = env("AIJOBS_CONFLICT_TEXT");
export const MAX_IN_FLIGHT = Number(env("AIJOBS_MAX_IN_FLIGHT"));
export const MAX_STREAMS = Number(env("AIJOBS_MAX_STREAMS"));

const b64url = (value: string | Buffer) => Buffer.from(value).toString("base64url");

export function mintToken(userId: string, ttlSeconds = 3600): string {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = b64url(
    JSON.stringify({ sub: userId, aud: "authenticated", role: "authenticated", iat: now, exp: now + ttlSeconds }),
  );
  const signature = createHmac("sha256", JWT_SECRET).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

/** Credits for `userId` through the admin endpoint, as a back office would (service key). */
export async function grant(userId: string, amount: number): Promise<void> {
  const response = await fetch(`${API_URL}/api/admin/credits`, {
    method: "POST",
    headers: { Authorization: `Bearer ${SERVICE_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId, amount, note: "node test" }),
  });
  if (!response.ok) throw new Error(`grant failed: ${response.status} ${await response.text()}`);
}

export interface TestUser {
  id: string;
  token: string;
  client: AijobsClient;
}

/** A new user with `credits` (no account at all with 0), and a client signed in as them. */
export async function newUser(credits = 100): Promise<TestUser> {
  const id = randomUUID();
  if (credits > 0) await grant(id, credits);
  const token = mintToken(id);
  return { id, token, client: new AijobsClient({ baseUrl: API_URL, token }) };
}

/** A time far enough ahead that the job stays pending for the whole test. */
export const LATER = new Date(Date.now() + 24 * 3600 * 1000).toISOString();

export const REVIEW = "The room was clean but the check-in took forty minutes.";
