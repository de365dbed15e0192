// POST /api/jobs {review_text, tone?}: an ai_generation job for the signed-in user, created
// with their own token, so aijobs charges their credits and row-level security applies.
import { newIdempotencyKey, type JobCreate, type PayloadOf } from "@aijobs/client";
import { aijobsFor, problemResponse, signedOut } from "@/lib/aijobs";

interface DraftRequest {
  review_text: string;
  tone?: PayloadOf<"ai_generation">["tone"];
  /** The browser's key for this draft, reused if it sends the same draft again. */
  idempotency_key?: string;
}

export async function POST(request: Request): Promise<Response> {
  const aijobs = await aijobsFor(request);
  if (!aijobs) return signedOut();
  const body = (await request.json()) as DraftRequest;
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
