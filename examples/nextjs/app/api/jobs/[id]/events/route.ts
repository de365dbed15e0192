// GET /api/jobs/:id/events: the job's Server-Sent Events, passed through as they arrive.
// The browser reads them from this app's origin with its session cookie, so the token never
// reaches browser JavaScript and aijobs needs no CORS entry for this app.
import { aijobsFor, problemResponse, signedOut } from "@/lib/aijobs";

export const dynamic = "force-dynamic";

export async function GET(request: Request, { params }: { params: Promise<{ id: string }> }): Promise<Response> {
  const aijobs = await aijobsFor(request);
  if (!aijobs) return signedOut();
  const { id } = await params;
  const encoder = new TextEncoder();
  const events = aijobs.events(id, { signal: request.signal });
  let first: IteratorResult<unknown>;
  try {
    first = await events.next(); // a 401/404/429 is answered as such, not as an empty stream
  } catch (error) {
    return problemResponse(error);
  }
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (event: unknown) => controller.enqueue(encoder.encode(`event: status\ndata: ${JSON.stringify(event)}\n\n`));
      try {
        if (!first.done) send(first.value);
        for await (const event of events) send(event);
      } catch {
        // the browser left, or aijobs went away: the browser's client reconnects
      } finally {
        controller.close();
      }
    },
    async cancel() {
      await events.return(undefined);
    },
  });
  return new Response(stream, {
    headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no" },
  });
}
