// The signed-in user's Supabase access token, as a route handler receives it.
//
// A browser that calls this app sends its session in Supabase's auth cookie
// (`sb-<project ref>-auth-token`, written by @supabase/ssr; long sessions are split into
// `.0`, `.1`, ... chunks, and recent versions prefix the value with `base64-`). A server or
// a script sends `Authorization: Bearer <access token>` instead. In an app that already uses
// @supabase/ssr, `(await supabase.auth.getSession()).data.session?.access_token` is the same.
//
// The token is not verified here: aijobs verifies it (JWT_SECRET or JWT_JWKS_URL, the same
// keys as Supabase), and answers 401 when it is not good.

export interface CookieLike {
  name: string;
  value: string;
}

const AUTH_COOKIE = /^sb-[^.]+-auth-token$/;

export function supabaseAccessToken(headers: Headers, cookies: CookieLike[]): string | null {
  const authorization = headers.get("authorization");
  if (authorization?.toLowerCase().startsWith("bearer ")) return authorization.slice(7).trim() || null;

  const session = new Map<string, string[]>();
  for (const { name, value } of cookies) {
    const [base, chunk] = name.split(/\.(?=\d+$)/);
    if (!base || !AUTH_COOKIE.test(base)) continue;
    const parts = session.get(base) ?? [];
    parts[chunk === undefined ? 0 : Number(chunk)] = value;
    session.set(base, parts);
  }
  for (const parts of session.values()) {
    const token = accessTokenOf(parts.join(""));
    if (token) return token;
  }
  return null;
}

function accessTokenOf(raw: string): string | null {
  let text = decodeURIComponent(raw);
  if (text.startsWith("base64-")) text = Buffer.from(text.slice(7), "base64url").toString("utf8");
  try {
    const value: unknown = JSON.parse(text);
    // @supabase/ssr stores the session object; older helpers stored [access, refresh, ...].
    if (Array.isArray(value) && typeof value[0] === "string") return value[0];
    if (value && typeof value === "object" && "access_token" in value && typeof value.access_token === "string") {
      return value.access_token;
    }
  } catch {
    // not a session cookie we can read
  }
  return null;
}
