// GET /api/jobs/:id: the job, read as the signed-in user (someone else's is a 404).
import { aijobsFor, problemResponse, signedOut } from "@/lib/aijobs";

export async function GET(request: Request, { params }: { params: Promise<{ id: string }> }): Promise<Response> {
  const aijobs = await aijobsFor(request);
  if (!aijobs) return signedOut();
  try {
    return Response.json(await aijobs.get((await params).id));
  } catch (error) {
    return problemResponse(error);
  }
}
