"use client";
// A job's status, live: the aijobs client reads this app's /api/jobs/:id/events (same paths as
// aijobs, so the same client works here with no base URL and no token: the session cookie
// goes along, and the route handler adds the token on the server).
import { useEffect, useState } from "react";
import { AijobsClient, AijobsError, type Job, type JobStatus as Status } from "@aijobs/client";

const client = new AijobsClient({ baseUrl: "" });

function replyOf(job: Job): string | null {
  const output = job.result?.output as { reply?: unknown } | undefined;
  return typeof output?.reply === "string" ? output.reply : null;
}

export function JobStatus({ id }: { id: string }) {
  const [statuses, setStatuses] = useState<Status[]>([]);
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const controller = new AbortController();
    (async () => {
      try {
        for await (const event of client.events(id, { signal: controller.signal })) {
          setStatuses((seen) => [...seen, event.status]);
          setJob(event.job);
        }
      } catch (e) {
        if (controller.signal.aborted) return;
        setError(e instanceof AijobsError ? (e.problem.detail ?? e.problem.title) : "lost the connection");
      }
    })();
    return () => controller.abort();
  }, [id]);

  const reply = job ? replyOf(job) : null;
  return (
    <section>
      <p>
        Status: <strong>{statuses.at(-1) ?? "connecting…"}</strong> ({statuses.join(" → ")})
      </p>
      {reply && (
        <>
          <blockquote style={{ whiteSpace: "pre-wrap" }}>{reply}</blockquote>
          <button onClick={() => navigator.clipboard.writeText(reply)}>Copy</button>
        </>
      )}
      {job?.status === "failed" && <p role="alert">The draft failed: {job.error}. Your credits were refunded.</p>}
      {error && <p role="alert">{error}</p>}
    </section>
  );
}
