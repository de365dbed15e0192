// The reply window: the selected review (kept in session storage, edits included, so a
// refusal, a closed window or a bad token never loses it), an ai_generation job created with
// the user's token, its status live over Server-Sent Events, then the reply and a Copy button.
import { isTerminal, newIdempotencyKey } from "./lib/aijobs-client.js";
import { clientFor, loadSettings } from "./settings.js";
import { describeError } from "./problems.js";

const $ = (id) => document.getElementById(id);
let following = null; // AbortController of the open event stream

async function loadDraft() {
  const { draft } = await chrome.storage.session.get("draft");
  return draft ?? { text: "", pageUrl: null, jobId: null, key: null };
}

async function saveDraft(changes) {
  const draft = { ...(await loadDraft()), ...changes };
  await chrome.storage.session.set({ draft });
  return draft;
}

function showProblem(text) {
  $("problem").textContent = text ?? "";
  $("problem").hidden = !text;
}

function showStatus(job) {
  $("job").hidden = false;
  $("job-id").textContent = job.id;
  $("job-id").title = job.id;
  $("status").textContent = job.status;
  $("status").className = `badge ${job.status}`;
  $("status").dataset.status = job.status;
}

function showJobEnd(job) {
  if (job.status === "completed") {
    const reply = job.result?.output?.reply;
    $("reply").value = typeof reply === "string" ? reply : JSON.stringify(job.result?.output ?? job.result, null, 2);
    $("answer").hidden = false;
  } else if (job.status === "failed") {
    showProblem(`The draft failed: ${job.error ?? "unknown error"}. Your credits were refunded; try again.`);
  } else if (job.status === "cancelled") {
    showProblem("The draft was cancelled; your credits were refunded.");
  }
  $("draft").disabled = false;
}

async function follow(client, jobId) {
  following?.abort();
  following = new AbortController();
  for await (const event of client.events(jobId, { signal: following.signal })) {
    showStatus(event.job);
    if (isTerminal(event.status)) showJobEnd(event.job);
  }
}

async function draftReply() {
  showProblem(null);
  $("answer").hidden = true;
  const text = $("review").value.trim();
  if (!text) return showProblem("Select a review on a page first, or paste one above.");
  const settings = await loadSettings();
  if (!settings.token) {
    return showProblem("Signed out: open Settings and paste your access token, then click “Draft a reply” again.");
  }
  // One key per draft, kept until a job is made: a retry after a lost answer cannot charge twice.
  let draft = await loadDraft();
  if (!draft.key || draft.jobId) draft = await saveDraft({ key: newIdempotencyKey(), jobId: null });
  $("draft").disabled = true;
  const client = clientFor(settings);
  try {
    const job = await client.create(
      { type: "ai_generation", payload: { review_text: text, tone: $("tone").value } },
      { idempotencyKey: draft.key },
    );
    await saveDraft({ jobId: job.id, text });
    showStatus(job);
    await follow(client, job.id);
  } catch (error) {
    if (error?.name === "AbortError") return;
    showProblem(describeError(error, settings.apiUrl));
    $("draft").disabled = false;
  }
}

$("review").addEventListener("input", () => saveDraft({ text: $("review").value }));
$("draft").addEventListener("click", draftReply);
$("settings").addEventListener("click", () => chrome.runtime.openOptionsPage());
$("copy").addEventListener("click", async () => {
  await navigator.clipboard.writeText($("reply").value);
  $("copied").hidden = false;
});

const draft = await loadDraft();
$("review").value = draft.text;
if (draft.jobId) {
  // Reopened: show the job this draft already made instead of making another.
  const settings = await loadSettings();
  const client = clientFor(settings);
  follow(client, draft.jobId).catch((error) => showProblem(describeError(error, settings.apiUrl)));
} else if (draft.text) {
  draftReply();
}
