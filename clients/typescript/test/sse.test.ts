// The event-stream parser on the format's edge cases (the real stream is in client.test.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { readServerSentEvents } from "@aijobs/client";

function chunked(...parts: string[]): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const part of parts) controller.enqueue(encoder.encode(part));
      controller.close();
    },
  });
  return new Response(body);
}

async function all(response: Response) {
  const events = [];
  for await (const event of readServerSentEvents(response)) events.push(event);
  return events;
}

test("fields split across chunks, CRLF and CR line ends, comments, multi-line data", async () => {
  const events = await all(
    chunked(": ping\r\n\r\nevent: sta", "tus\r\nid: 1\r\ndata: {\"a\":", "1}\r", "\n\r\n", "data: x\rdata: y\r\r", "event: status\ndata:z\n\n"),
  );
  assert.deepEqual(events, [
    { event: "status", data: '{"a":1}', id: "1" },
    { event: "message", data: "x\ny", id: "1" },
    { event: "status", data: "z", id: "1" },
  ]);
});

test("an event not ended by a blank line is not dispatched", async () => {
  assert.deepEqual(await all(chunked("data: half")), []);
});
