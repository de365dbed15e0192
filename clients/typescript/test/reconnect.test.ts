// How events() reconnects when the answers go wrong in ways the real API cannot be made to
// answer on cue: a scripted HTTP server on loopback plays an app's fallback page, streams that
// close before their first event, and a 503 or a 429 on a reconnect. Each call carries a
// timeout signal, so a client that reconnects forever fails the test instead of hanging it.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import {
  AijobsClient,
  AijobsError,
  NetworkError,
  RateLimitedError,
  ServiceUnavailableError,
  type JobEvent,
  type JobStatus,
} from "@aijobs/client";

type Answer = (response: ServerResponse) => void;

interface Scripted {
  client: AijobsClient;
  /** When each request arrived (ms since the epoch). */
  arrivals: number[];
  close(): Promise<void>;
}

/** A server answering its nth request with `answers[n]` (the last one from then on). */
async function scripted(...answers: Answer[]): Promise<Scripted> {
  const arrivals: number[] = [];
  const server = createServer((_request: IncomingMessage, response: ServerResponse) => {
    arrivals.push(Date.now());
    answers[Math.min(arrivals.length, answers.length) - 1]!(response);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    client: new AijobsClient({ baseUrl: `http://127.0.0.1:${port}`, token: "t" }),
    arrivals,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

function statusEvent(status: JobStatus): string {
  return `event: status\ndata: ${JSON.stringify({ job_id: "j", status, job: { id: "j", status } })}\n\n`;
}

/** An event stream with these events, ended cleanly (none at all: closed before its first). */
const stream =
  (...statuses: JobStatus[]): Answer =>
  (response) => {
    response.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8" });
    response.end(statuses.map(statusEvent).join(""));
  };

/** An event stream whose connection drops after these events. */
const dropped =
  (...statuses: JobStatus[]): Answer =>
  (response) => {
    response.writeHead(200, { "Content-Type": "text/event-stream" });
    response.write(statuses.map(statusEvent).join(""));
    setTimeout(() => response.destroy(), 50);
  };

const problem =
  (status: number, code: string, retryAfter: string): Answer =>
  (response) => {
    response.writeHead(status, { "Content-Type": "application/problem+json", "Retry-After": retryAfter });
    response.end(JSON.stringify({ type: "about:blank", title: "busy", status, code, detail: `${code}, try later` }));
  };

const appPage: Answer = (response) => {
  response.writeHead(200, { "Content-Type": "text/html" });
  response.end("<!doctype html><div id=app></div>");
};

async function collect(client: AijobsClient, seconds: number): Promise<{ events: JobEvent[]; error: unknown }> {
  const events: JobEvent[] = [];
  try {
    for await (const event of client.events("j", { signal: AbortSignal.timeout(seconds * 1000) })) events.push(event);
  } catch (error) {
    return { events, error };
  }
  return { events, error: null };
}

describe("events() reconnecting", () => {
  test("a 200 that is not an event stream (an app's fallback page) is an error at once, naming its type", async () => {
    const server = await scripted(appPage);
    try {
      const { error } = await collect(server.client, 10);
      assert.ok(error instanceof AijobsError, `expected an AijobsError, got ${String(error)}`);
      assert.equal(error.status, 200);
      assert.match(error.message, /text\/html/);
      assert.equal(server.arrivals.length, 1);
    } finally {
      await server.close();
    }
  });

  test("streams that keep closing before their first event count toward the reconnect bound", async () => {
    const server = await scripted(stream());
    try {
      const { error } = await collect(server.client, 30);
      assert.ok(error instanceof NetworkError, `expected a NetworkError, got ${String(error)}`);
      assert.match(error.message, /before its first event/);
      assert.equal(server.arrivals.length, 6, "the first connection and 5 reconnects");
    } finally {
      await server.close();
    }
  });

  test("a reconnect answered 503 or 429 too_many_streams waits the Retry-After and tries again", async () => {
    const server = await scripted(
      dropped("pending"),
      problem(503, "transient_conflict", "2"),
      problem(429, "too_many_streams", "1"),
      stream("pending", "processing", "completed"),
    );
    try {
      const { events, error } = await collect(server.client, 30);
      assert.equal(error, null);
      assert.deepEqual(
        events.map((e) => e.status),
        ["pending", "processing", "completed"],
      );
      const [, busy, limited, open] = server.arrivals;
      assert.ok(limited! - busy! >= 1900, `waited ${limited! - busy!} ms after Retry-After: 2`);
      assert.ok(open! - limited! >= 900, `waited ${open! - limited!} ms after Retry-After: 1`);
    } finally {
      await server.close();
    }
  });

  test("503s on reconnects count toward the bound; on the first connection one is thrown at once", async () => {
    const server = await scripted(dropped("pending"), problem(503, "transient_conflict", "0"));
    try {
      const { events, error } = await collect(server.client, 30);
      assert.deepEqual(
        events.map((e) => e.status),
        ["pending"],
      );
      assert.ok(error instanceof ServiceUnavailableError, `expected a ServiceUnavailableError, got ${String(error)}`);
      assert.equal(server.arrivals.length, 6, "the drop and 5 refusals");
    } finally {
      await server.close();
    }
    const refusing = await scripted(problem(503, "transient_conflict", "1"), problem(429, "too_many_streams", "1"));
    try {
      assert.ok((await collect(refusing.client, 10)).error instanceof ServiceUnavailableError);
      assert.ok((await collect(refusing.client, 10)).error instanceof RateLimitedError);
      assert.equal(refusing.arrivals.length, 2);
    } finally {
      await refusing.close();
    }
  });
});
