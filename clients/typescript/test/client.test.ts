// The client's calls against the real API and worker (started by the Python test).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AijobsClient, isTerminal, newIdempotencyKey, type Job, type JobEvent } from "@aijobs/client";
import { API_URL, LATER, REVIEW, newUser } from "./helpers.js";

describe("jobs", () => {
  test("create, then wait for the worker's result", async () => {
    const { client } = await newUser(10);
    const job = await client.create({ type: "ai_generation", payload: { review_text: REVIEW, tone: "friendly" } });
    assert.equal(job.type, "ai_generation");
    assert.equal(job.cost, 2);
    assert.ok(["pending", "processing", "completed"].includes(job.status));
    const done = await client.wait(job.id);
    assert.equal(done.status, "completed");
    assert.equal(done.result?.provider, "offline");
    const output = done.result?.output as { reply?: unknown } | undefined;
    assert.equal(typeof output?.reply, "string");
    assert.deepEqual(await client.get(job.id), done);
    const me = await client.me();
    assert.equal(me.balance, 8);
    assert.equal(me.has_account, true);
  });

  test("the same Idempotency-Key makes one job and one charge", async () => {
    const { client } = await newUser(10);
    const key = newIdempotencyKey();
    assert.match(key, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const body = { type: "sentiment_analysis", payload: { text: "Lovely staff." } } as const;
    const [first, second] = await Promise.all([
      client.create(body, { idempotencyKey: key }),
      client.create(body, { idempotencyKey: key }),
    ]);
    assert.equal(first.id, second.id);
    assert.equal((await client.me()).balance, 9);
    assert.notEqual(newIdempotencyKey(), key);
  });

  test("the key helper works without crypto.randomUUID (a page on http://192.168.x.y)", async () => {
    const randomUUID = globalThis.crypto.randomUUID;
    Object.defineProperty(globalThis.crypto, "randomUUID", { value: undefined, configurable: true });
    try {
      const keys = new Set(Array.from({ length: 100 }, () => newIdempotencyKey()));
      assert.equal(keys.size, 100);
      for (const key of keys) assert.match(key, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    } finally {
      Object.defineProperty(globalThis.crypto, "randomUUID", { value: randomUUID, configurable: true });
    }
  });

  test("batch create, all or nothing, in order", async () => {
    const { client } = await newUser(10);
    const jobs = await client.createBatch([
      { type: "sentiment_analysis", payload: { text: "Great." } },
      { type: "ai_generation", payload: { review_text: REVIEW } },
    ]);
    assert.deepEqual(
      jobs.map((j) => j.type),
      ["sentiment_analysis", "ai_generation"],
    );
    assert.equal((await client.me()).balance, 7);
    const done = await Promise.all(jobs.map((j) => client.wait(j.id)));
    assert.deepEqual(
      done.map((j) => j.status),
      ["completed", "completed"],
    );
  });

  test("list pages newest first and filters by status", async () => {
    const { client } = await newUser(20);
    const created: Job[] = [];
    for (let i = 0; i < 3; i++) {
      created.push(await client.create({ type: "sentiment_analysis", payload: { text: `review ${i}` }, run_at: LATER }));
    }
    const page = await client.list({ limit: 2 });
    assert.deepEqual(
      page.items.map((j) => j.id),
      [created[2]!.id, created[1]!.id],
    );
    assert.ok(page.next_cursor);
    const rest = await client.list({ limit: 2, cursor: page.next_cursor });
    assert.deepEqual(
      rest.items.map((j) => j.id),
      [created[0]!.id],
    );
    assert.equal(rest.next_cursor, null);
    const all: string[] = [];
    for await (const job of client.listAll({ status: "pending", limit: 1 })) all.push(job.id);
    assert.deepEqual(all, created.map((j) => j.id).reverse());
    assert.deepEqual((await client.list({ status: "completed" })).items, []);
  });

  test("cancel refunds a pending job, retry runs it again as a new charged job", async () => {
    const { client } = await newUser(10);
    const job = await client.create({ type: "ai_generation", payload: { review_text: REVIEW }, run_at: LATER });
    const cancelled = await client.cancel(job.id);
    assert.equal(cancelled.status, "cancelled");
    assert.equal((await client.me()).balance, 10);
    const again = await client.retry(job.id, { idempotencyKey: newIdempotencyKey() });
    assert.equal(again.retry_of, job.id);
    assert.notEqual(again.id, job.id);
    assert.equal((await client.wait(again.id)).status, "completed");
    const ledger = await client.ledger();
    assert.deepEqual(
      ledger.items.map((e) => [e.kind, e.amount]),
      [
        ["debit", -2],
        ["refund", 2],
        ["debit", -2],
        ["grant", 10],
      ],
    );
    const firstPage = await client.ledger({ limit: 1 });
    assert.equal(firstPage.items.length, 1);
    assert.ok(firstPage.next_cursor);
  });

  test("the event stream follows the job to its end", async () => {
    const { client } = await newUser(10);
    const job = await client.create({ type: "ai_generation", payload: { review_text: REVIEW } });
    const events: JobEvent[] = [];
    for await (const event of client.events(job.id)) events.push(event);
    const statuses = events.map((e) => e.status);
    assert.equal(statuses.at(-1), "completed");
    assert.ok(isTerminal(statuses.at(-1)!));
    assert.equal(new Set(statuses).size, statuses.length, "no status twice");
    assert.equal(events.at(-1)!.job.result?.provider, "offline");
  });

  test("a stream closed early by the caller, and one ended by a cancel", async () => {
    const { client } = await newUser(10);
    const job = await client.create({ type: "sentiment_analysis", payload: { text: "ok" }, run_at: LATER });
    for await (const event of client.events(job.id)) {
      assert.equal(event.status, "pending");
      break; // closes the stream, and gives its slot back
    }
    const controller = new AbortController();
    const seen: string[] = [];
    const follow = (async () => {
      for await (const event of client.events(job.id, { signal: controller.signal })) {
        seen.push(event.status);
        if (event.status === "pending") await client.cancel(job.id);
      }
    })();
    await follow;
    assert.deepEqual(seen, ["pending", "cancelled"]);
    controller.abort();
  });

  test("the token may be a function, read at each request (a refreshed session)", async () => {
    const user = await newUser(5);
    let calls = 0;
    const client = new AijobsClient({ baseUrl: `${API_URL}/`, token: async () => (calls++, user.token) });
    assert.equal((await client.me()).user_id, user.id);
    assert.equal((await client.jobTypes()).find((t) => t.name === "ai_generation")?.cost, 2);
    assert.equal(calls, 1, "job types are public: no token sent");
  });

  test("wait gives up when asked to", async () => {
    const { client } = await newUser(5);
    const job = await client.create({ type: "sentiment_analysis", payload: { text: "ok" }, run_at: LATER });
    await assert.rejects(client.wait(job.id, { timeoutMs: 0 }), (error: Error) => {
      assert.equal(error.name, "WaitTimeoutError");
      return true;
    });
  });
});
