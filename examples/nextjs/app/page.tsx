"use client";
// Paste a review, get a job: POST /api/jobs (this app's route handler, which forwards the
// user's Supabase session to aijobs), then follow it on /jobs/:id.
import { useRef, useState, type FormEvent } from "react";
import { useRouter } from "next/navigation";
import { newIdempotencyKey, type Job, type Problem } from "@aijobs/client";

export default function DraftReply() {
  const router = useRouter();
  const [review, setReview] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  // One key per draft: a double click or a retry after a network error makes one job.
  const key = useRef(newIdempotencyKey());

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      const response = await fetch("/api/jobs", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ review_text: review, idempotency_key: key.current }),
      });
      if (!response.ok) {
        setProblem((await response.json()) as Problem);
        return;
      }
      const job = (await response.json()) as Job;
      key.current = newIdempotencyKey();
      router.push(`/jobs/${job.id}`);
    } catch {
      setProblem({ title: "Network error", status: 0, detail: "could not reach the server; try again" });
    } finally {
      setBusy(false);
    }
  }

  return (
    <main>
      <h1>Draft a reply to a review</h1>
      <form onSubmit={submit}>
        <textarea value={review} onChange={(e) => setReview(e.target.value)} rows={6} style={{ width: "100%" }} />
        <button type="submit" disabled={busy || !review.trim()}>
          Draft a reply (2 credits)
        </button>
      </form>
      {problem && (
        <p role="alert" style={{ color: "#8a1c1c" }}>
          {problem.detail ?? problem.title}
          {problem.errors?.map((e) => (
            <span key={e.field}>
              <br />
              {e.field}: {e.reason}
            </span>
          ))}
        </p>
      )}
    </main>
  );
}
