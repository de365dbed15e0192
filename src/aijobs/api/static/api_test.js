// The /api-test page: plain JavaScript, no build step. Status updates come over SSE read with
// fetch streaming (EventSource cannot send an Authorization header, and a token in a URL
// ends up in logs).
"use strict";

const $ = (id) => document.getElementById(id);
const jobTypes = JSON.parse($("job-types").textContent);
let token = null;
let stream = null; // AbortController of the live SSE request

function headers(extra = {}) {
  return { Authorization: `Bearer ${token}`, ...extra };
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) throw Object.assign(new Error(body?.detail || response.statusText), { problem: body });
  return body;
}

function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  const p = err.problem;
  let text = p ? `${p.status} ${p.title}: ${p.detail || ""}` : String(err.message || err);
  if (p?.errors) text += "\n" + p.errors.map((e) => `• ${e.field}: ${e.reason}`).join("\n");
  if (p?.balance !== undefined && p?.cost !== undefined) text += `\nbalance ${p.balance}, cost ${p.cost}`;
  box.textContent = text;
  box.hidden = false;
}

function selectType() {
  const jt = jobTypes.find((t) => t.name === $("job-type").value);
  $("payload").value = jt.example;
  $("type-description").textContent = jt.description;
}

async function signIn(value) {
  token = value.trim();
  if (!token) return;
  try {
    const me = await api("/api/me");
    $("whoami").textContent = `Signed in as ${me.user_id}`;
    $("whoami").classList.remove("muted");
    $("create").disabled = false;
    $("sign-out").hidden = false;
    showError(null);
    await refresh();
  } catch (err) {
    token = null;
    $("create").disabled = true;
    showError(err);
  }
}

async function refresh() {
  if (!token) return;
  const [me, page] = await Promise.all([api("/api/me"), api("/api/jobs?limit=10")]);
  $("balance").textContent = me.balance;
  $("in-flight").textContent = `${me.jobs_in_flight} / ${me.max_jobs_in_flight ?? "no limit"}`;
  const rows = page.items.map((j) =>
    `<tr data-job="${j.id}"><td><code>${j.id.slice(0, 8)}</code></td><td>${j.type}</td>` +
    `<td><span class="badge ${j.status}">${j.status}</span></td><td>${j.cost}</td>` +
    `<td>${new Date(j.created_at).toLocaleTimeString()}</td></tr>`);
  $("recent").innerHTML = rows.join("") || `<tr><td colspan="5" class="muted">No jobs yet.</td></tr>`;
}

function setStatus(status) {
  const badge = $("live-status");
  badge.textContent = status;
  badge.className = `badge ${status}`;
}

function addTimeline(status) {
  const li = document.createElement("li");
  li.dataset.status = status;
  li.textContent = `${new Date().toLocaleTimeString()}  ${status}`;
  $("timeline").appendChild(li);
}

function showResult(job) {
  const pre = $("result");
  if (job.status === "completed") pre.textContent = JSON.stringify(job.result, null, 2);
  else if (job.error) pre.textContent = job.error;
  else return;
  pre.hidden = false;
}

// Read an SSE response body: blocks separated by a blank line, "field: value" lines.
async function follow(jobId) {
  if (stream) stream.abort();
  stream = new AbortController();
  const response = await fetch(`/api/jobs/${jobId}/events`, {
    headers: headers({ Accept: "text/event-stream" }),
    signal: stream.signal,
  });
  if (!response.ok) throw Object.assign(new Error("stream refused"), { problem: await response.json() });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const fields = { event: "message", data: "" };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const name = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        fields[name] = name === "data" && fields.data ? `${fields.data}\n${val}` : val;
      }
      if (fields.event === "status" && fields.data) {
        const event = JSON.parse(fields.data);
        setStatus(event.status);
        addTimeline(event.status);
        if (["completed", "failed", "cancelled"].includes(event.status)) {
          showResult(event.job);
          refresh();
        }
      }
    }
  }
}

async function createJob() {
  showError(null);
  let payload;
  try {
    payload = JSON.parse($("payload").value);
  } catch (err) {
    showError(new Error(`payload is not valid JSON: ${err.message}`));
    return;
  }
  const body = { type: $("job-type").value, payload, priority: Number($("priority").value || 0) };
  $("create").disabled = true;
  try {
    const job = await api("/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() },
      body: JSON.stringify(body),
    });
    $("live-job").textContent = job.id;
    $("timeline").innerHTML = "";
    $("result").hidden = true;
    setStatus(job.status);
    refresh();
    follow(job.id).catch((err) => { if (err.name !== "AbortError") showError(err); });
  } catch (err) {
    showError(err);
  } finally {
    $("create").disabled = !token;
  }
}

$("job-type").addEventListener("change", selectType);
$("reset-example").addEventListener("click", selectType);
$("sign-in").addEventListener("click", () => signIn($("token").value));
$("sign-out").addEventListener("click", () => { token = null; location.reload(); });
$("create").addEventListener("click", createJob);
$("refresh").addEventListener("click", () => refresh().catch(showError));
if ($("dev-token")) {
  $("dev-token").addEventListener("click", async () => {
    const response = await fetch("/api/dev/token", { method: "POST" });
    const body = await response.json();
    if (!response.ok) { showError(Object.assign(new Error(body.detail), { problem: body })); return; }
    $("token").value = body.token;
    await signIn(body.token);
  });
}
selectType();
