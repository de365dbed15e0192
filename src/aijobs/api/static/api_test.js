// The /api-test page: plain JavaScript, no build step. Status updates come over SSE read with
// fetch streaming (EventSource cannot send an Authorization header, and a token in a URL
// ends up in logs).
"use strict";

const $ = (id) => document.getElementById(id);
const jobTypes = JSON.parse($("job-types").textContent);
let token = null;
let stream = null; // AbortController of the live SSE request

// An Idempotency-Key. crypto.randomUUID exists only in secure contexts (https, localhost):
// this page is also opened over plain http on a LAN address, where getRandomValues still works.
function newKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Job ids are time-ordered (uuid v7): ids made the same day share their first 8 characters,
// so a short form shows the random end instead.
function shortId(id) {
  return `…${id.slice(-8)}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

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
  const rows = page.items.map((j) => {
    const open = el("button", { type: "button", class: "link", title: `${j.id} (follow this job)` }, el("code", {}, shortId(j.id)));
    open.addEventListener("click", () => watch(j));
    return el("tr", { "data-job": j.id },
      el("td", {}, open), el("td", {}, j.type),
      el("td", {}, el("span", { class: `badge ${j.status}` }, j.status)), el("td", {}, String(j.cost)),
      el("td", {}, new Date(j.created_at).toLocaleTimeString()));
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No jobs yet.")));
  $("recent").replaceChildren(...rows);
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

// A value of a result as a person reads it: text as text (its line breaks kept, not "\n"),
// lists as lists, objects as labelled fields.
function renderValue(value) {
  if (value === null || value === undefined) return el("span", { class: "muted" }, "—");
  if (Array.isArray(value)) {
    if (!value.length) return el("span", { class: "muted" }, "none");
    // Short labels (topics, tags) on one line; sentences and objects one per line.
    const short = value.every((v) => v === null || (typeof v !== "object" && String(v).length <= 24));
    if (short) return el("span", {}, value.join(", "));
    return el("ul", {}, ...value.map((v) => el("li", {}, renderValue(v))));
  }
  if (typeof value === "object") {
    const dl = el("dl", {});
    for (const [name, v] of Object.entries(value)) dl.append(el("dt", {}, name.replace(/_/g, " ")), el("dd", {}, renderValue(v)));
    return dl;
  }
  return el("span", { class: typeof value === "string" ? "text" : "" }, String(value));
}

function showResult(job) {
  const box = $("result");
  if (job.status === "completed" && job.result) {
    const { output, provider, model, ...rest } = job.result;
    const parts = [renderValue(output === undefined ? rest : output)];
    if (provider || model) parts.push(el("p", { class: "muted provenance" }, `by ${provider || "?"}${model ? ` · ${model}` : ""}`));
    const raw = el("details", {}, el("summary", {}, "Raw JSON"), el("pre", {}, JSON.stringify(job.result, null, 2)));
    box.replaceChildren(...parts, raw);
  } else if (job.error) {
    box.replaceChildren(el("p", { class: "error" }, `${job.status}: ${job.error}`));
  } else return;
  box.hidden = false;
}

// Read an SSE response body: blocks separated by a blank line, "field: value" lines.
async function follow(jobId) {
  if (stream) stream.abort();
  stream = new AbortController();
  const live = $("live-reply");
  live.textContent = "";
  live.hidden = true;
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
      // The reply as the model writes it; a reset means a new attempt starts it over.
      if (fields.event === "delta" && fields.data) {
        live.textContent += JSON.parse(fields.data).text;
        live.hidden = false;
      } else if (fields.event === "reset") {
        live.textContent = "";
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

// Follow `job` live in panel 3 (a new job, or one picked from the recent jobs).
function watch(job) {
  $("live-job").textContent = job.id;
  $("timeline").replaceChildren();
  $("result").hidden = true;
  $("result").replaceChildren();
  setStatus(job.status);
  follow(job.id).catch((err) => { if (err.name !== "AbortError") showError(err); });
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
      headers: { "Content-Type": "application/json", "Idempotency-Key": newKey() },
      body: JSON.stringify(body),
    });
    watch(job);
    refresh();
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
