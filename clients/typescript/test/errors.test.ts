// Every refusal of the real API arrives as a typed error carrying its problem document.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import {
  AijobsClient,
  AijobsError,
  ConflictError,
  InsufficientCreditsError,
  NetworkError,
  NotFoundError,
  RateLimitedError,
  ServiceUnavailableError,
  UnauthorizedError,
  ValidationError,
  errorFromResponse,
  newIdempotencyKey,
  parseRetryAfter,
  type JobCreate,
} from "@aijobs/client";
import { API_URL, CONFLICT_TEXT, LATER, MAX_IN_FLIGHT, MAX_STREAMS, REVIEW, mintToken, newUser } from "./helpers.js";

/** `promise` rejects with an instance of `Class`; that error, to look at. */
async function refusal<E extends Error>(promise: Promise<unknown>, Class: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Class, `expected ${Class.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${Class.name}, but it succeeded`);
}

describe("errors", () => {
  test("402 with balance and cost; nothing charged", async () => {
    const { client } = await newUser(1);
    const error = await refusal(client.create({ type: "ai_generation", payload: { review_text: REVIEW } }), InsufficientCreditsError);
    assert.ok(error instanceof AijobsError);
    assert.equal(error.status, 402);
    assert.equal(error.code, "insufficient_credits");
    assert.equal(error.balance, 1);
    assert.equal(error.cost, 2);
    assert.match(error.message, /costs 2 credits/);
    assert.equal((await client.me()).balance, 1);
  });

  test("402 for a signed-in user with no account yet", async () => {
    const { client } = await newUser(0);
    const error = await refusal(client.create({ type: "sentiment_analysis", payload: { text: "hi" } }), InsufficientCreditsError);
    assert.equal(error.code, "no_account");
    assert.equal(error.balance, 0);
  });

  test("422 names each invalid field", async () => {
    const { client } = await newUser(10);
    // Deliberately what the types refuse: the server must refuse it too, naming each field.
    const invalid = { type: "ai_generation", payload: { tone: "rude" } } as unknown as JobCreate;
    const error = await refusal(client.create(invalid), ValidationError);
    const fields = error.fields.map((f) => f.field).sort();
    assert.deepEqual(fields, ["body.payload.review_text", "body.payload.tone"]);
    assert.ok(error.fields.every((f) => f.reason.length > 0));
    const query = await refusal(client.list({ limit: 1000 }), ValidationError);
    assert.deepEqual(
      query.fields.map((f) => f.field),
      ["query.limit"],
    );
  });

  test("401 for no token, a bad one and an expired one", async () => {
    const anonymous = new AijobsClient({ baseUrl: API_URL });
    const none = await refusal(anonymous.me(), UnauthorizedError);
    assert.equal(none.status, 401);
    assert.match(none.message, /sign in/);
    const bad = new AijobsClient({ baseUrl: API_URL, token: "not-a-token" });
    await refusal(bad.me(), UnauthorizedError);
    const expired = new AijobsClient({ baseUrl: API_URL, token: mintToken(randomUUID(), -60) });
    assert.match((await refusal(expired.me(), UnauthorizedError)).message, /expired/);
  });

  test("404 for a job that is not there (or someone else's)", async () => {
    const { client } = await newUser(10);
    const other = await newUser(10);
    const job = await other.client.create({ type: "sentiment_analysis", payload: { text: "x" }, run_at: LATER });
    for (const id of [randomUUID(), job.id]) {
      const error = await refusal(client.get(id), NotFoundError);
      assert.equal(error.code, "not_found");
    }
    await refusal(client.events(randomUUID()).next(), NotFoundError);
  });

  test("409 for a reused Idempotency-Key and for cancelling a finished job", async () => {
    const { client } = await newUser(10);
    const key = newIdempotencyKey();
    const job = await client.create({ type: "sentiment_analysis", payload: { text: "one" } }, { idempotencyKey: key });
    const reused = await refusal(
      client.create({ type: "sentiment_analysis", payload: { text: "two" } }, { idempotencyKey: key }),
      ConflictError,
    );
    assert.equal(reused.code, "idempotency_key_reused");
    await client.wait(job.id);
    assert.equal((await refusal(client.cancel(job.id), ConflictError)).code, "job_finished");
  });

  test("429 past the jobs-in-flight cap, with Retry-After", async () => {
    const { client } = await newUser(100);
    for (let i = 0; i < MAX_IN_FLIGHT; i++) {
      await client.create({ type: "sentiment_analysis", payload: { text: `later ${i}` }, run_at: LATER });
    }
    const error = await refusal(client.create({ type: "sentiment_analysis", payload: { text: "one more" } }), RateLimitedError);
    assert.equal(error.code, "too_many_jobs_in_flight");
    assert.equal(error.retryAfter, 5);
    assert.equal(error.limit, MAX_IN_FLIGHT);
    assert.equal(error.problem.in_flight, MAX_IN_FLIGHT);
  });

  test("429 past the open-streams cap, with Retry-After; a closed stream gives its slot back", async () => {
    const { client } = await newUser(10);
    const job = await client.create({ type: "sentiment_analysis", payload: { text: "x" }, run_at: LATER });
    const streams = Array.from({ length: MAX_STREAMS }, () => client.events(job.id));
    for (const stream of streams) assert.equal((await stream.next()).value?.status, "pending");
    const error = await refusal(client.events(job.id).next(), RateLimitedError);
    assert.equal(error.code, "too_many_streams");
    assert.equal(error.retryAfter, 5);
    await refusal(client.wait(job.id), RateLimitedError); // a long poll holds a slot too
    await streams[0]!.return(undefined);
    // The slot comes back when the server sees the stream close: the next stream may have
    // to ask again, as the Retry-After says (here without the wait).
    for (;;) {
      try {
        const again = client.events(job.id);
        assert.equal((await again.next()).value?.status, "pending");
        await again.return(undefined);
        break;
      } catch (error) {
        if (!(error instanceof RateLimitedError)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    await Promise.all(streams.slice(1).map((s) => s.return(undefined)));
  });

  test("503 when the database rolls the request back, with Retry-After; nothing charged", async () => {
    const { client } = await newUser(10);
    const error = await refusal(
      client.create({ type: "sentiment_analysis", payload: { text: CONFLICT_TEXT } }, { idempotencyKey: newIdempotencyKey() }),
      ServiceUnavailableError,
    );
    assert.equal(error.status, 503);
    assert.equal(error.code, "transient_conflict");
    assert.equal(error.retryAfter, 1);
    assert.equal((await client.me()).balance, 10);
  });

  test("no answer at all is a NetworkError, not a TypeError", async () => {
    const closed = new AijobsClient({ baseUrl: "http://127.0.0.1:9", token: "x" });
    const error = await refusal(closed.me(), NetworkError);
    assert.match(error.message, /no answer/);
  });

  test("a body that is not a problem document still becomes a typed error", async () => {
    const html = new Response("<html>Bad gateway</html>", { status: 502, statusText: "Bad Gateway" });
    const error = await errorFromResponse(html);
    assert.ok(error instanceof AijobsError);
    assert.equal(error.status, 502);
    assert.equal(error.problem.title, "Bad Gateway");
    const busy = new Response("", { status: 503, headers: { "Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT" } });
    assert.ok((await errorFromResponse(busy)) instanceof ServiceUnavailableError);
    assert.equal(parseRetryAfter("7"), 7);
    assert.equal(parseRetryAfter("Thu, 01 Jan 1970 00:00:10 GMT", 0), 10);
    assert.equal(parseRetryAfter("soon"), null);
  });
});
