// Settings (chrome.storage.local) and a client built from them.
import { AijobsClient } from "./lib/aijobs-client.js";

export const DEFAULT_API_URL = "http://127.0.0.1:8000";

/** {apiUrl, token}: the token is the user's own access token (a Supabase JWT), never a service key. */
export async function loadSettings() {
  const { apiUrl, token } = await chrome.storage.local.get(["apiUrl", "token"]);
  return { apiUrl: apiUrl || DEFAULT_API_URL, token: token || "" };
}

export async function saveSettings({ apiUrl, token }) {
  await chrome.storage.local.set({ apiUrl: apiUrl.trim().replace(/\/+$/, ""), token: token.trim() });
}

export function clientFor({ apiUrl, token }) {
  return new AijobsClient({ baseUrl: apiUrl, token });
}

/** The origin the API must allow: CORS_ORIGINS=chrome-extension://<this id>. */
export const ORIGIN = `chrome-extension://${chrome.runtime.id}`;
