// POST /api/jobs {review_text, tone?}: an ai_generation job for the signed-in user, created
// with their own token, so aijobs charges their credits and row-level security applies.
import { newIdempotencyKey, type JobCreate, type PayloadOf } from "@aijobs/client";
import { aijobsFor, invalidRequest, problemResponse, signedOut } from "@/lib/aijobs";

interface DraftRequest {
  review_text: string;
  tone?: PayloadOf<"ai_generation">["tone"];
  /** The browser's key for this draft, reused if it sends the same draft again. */
  idempotency_key?: string;
}

export async function POST(request: Request): Promise<Response> {
  const aijobs = await aijobsFor(request);
  if (!aijobs) return signedOut();
  let body: DraftRequest;
  try {
    body = (await request.json()) as DraftRequest;
  } catch {
    return invalidRequest("body", "must be JSON");
  }
  // aijobs checks the review itself (and names what is wrong); only the shape is ours to check.
  if (typeof body !== "object" || body === null) return invalidRequest("body", "must be a JSON object");
  if (typeof body.review_text !== "string") return invalidRequest("body.review_text", "must be a string");
  if (body.idempotency_key !== undefined && typeof body.idempotency_key !== "string") {
    return invalidRequest("body.idempotency_key", "must be a string");
  }
  const job: JobCreate = {
    type: "ai_generation",
    payload: { review_text: body.review_text, tone: body.tone ?? "friendly" },
  };
  try {
    const created = await aijobs.create(job, { idempotencyKey: body.idempotency_key ?? newIdempotencyKey() });
    return Response.json(created, { status: 201 });
  } catch (error) {
    return problemResponse(error); // 402 no credits, 422 a bad review, 429 too many at once, ...
  }
}
