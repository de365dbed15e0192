// aijobs dashboard: re-fetch the live fragment every 2 s and swap it in; requeue, find, inspect
// and cancel jobs, pause and resume job types, and replay webhook deliveries.
// Vanilla JS, no build step. Auth rides on the HttpOnly cookie (or whatever the page had);
// state-changing requests add X-Dashboard, which a cross-site form cannot send.
(function () {
  "use strict";
  const REFRESH_MS = 2000;
  const live = document.getElementById("live");
  const updated = document.getElementById("updated");
  const dot = document.getElementById("live-dot");
  const inspector = document.getElementById("inspector");
  const inspectorBody = document.getElementById("inspector-body");
  const toast = document.getElementById("toast");
  const headers = { "X-Dashboard": "1" };
  let busy = false;

  function say(text) {
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { toast.hidden = true; }, 4000);
  }

  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const res = await fetch("/dashboard/live", { headers, credentials: "same-origin", cache: "no-store" });
      if (res.status === 401) { location.href = "/dashboard/login"; return; }
      if (!res.ok) throw new Error(res.status);
      live.innerHTML = await res.text();
      updated.textContent = "live · updated " + new Date().toISOString().slice(11, 19) + " UTC";
      dot.classList.remove("stale");
    } catch (err) {
      dot.classList.add("stale");
      updated.textContent = "connection lost, retrying…";
    } finally {
      busy = false;
    }
  }

  async function inspect(id) {
    const res = await fetch("/dashboard/jobs/" + encodeURIComponent(id), { headers, credentials: "same-origin" });
    const why = res.status === 404 ? "no job with this id" : "could not load the job (" + res.status + ")";
    inspectorBody.innerHTML = res.ok ? await res.text() : "<div class='error'>" + why + "</div>";
    inspector.hidden = false;
  }

  async function requeue(button) {
    button.disabled = true;
    button.textContent = "Requeuing…";
    const res = await fetch("/dashboard/jobs/" + encodeURIComponent(button.dataset.job) + "/requeue", {
      method: "POST", headers, credentials: "same-origin",
    });
    const body = await res.json().catch(() => ({}));
    if (res.status === 201) {
      say("Requeued as job " + body.id);
      await refresh();
    } else {
      button.disabled = false;
      button.textContent = "Requeue";
      say("Requeue refused: " + (body.detail || res.status));
    }
  }

  async function cancel(button) {
    button.disabled = true;
    button.textContent = "Cancelling…";
    const res = await fetch("/dashboard/jobs/" + encodeURIComponent(button.dataset.job) + "/cancel", {
      method: "POST", headers, credentials: "same-origin",
    });
    const body = await res.json().catch(() => ({}));
    if (res.ok) {
      say(body.status === "cancelled" ? "Job cancelled (credits refunded)" : "Cancel requested: the worker stops it");
      await inspect(button.dataset.job);
      await refresh();
    } else {
      button.disabled = false;
      button.textContent = "Cancel job";
      say("Cancel refused: " + (body.detail || res.status));
    }
  }

  async function switchType(button, action) {
    const label = button.textContent;
    button.disabled = true;
    button.textContent = action === "pause" ? "Pausing…" : "Resuming…";
    const res = await fetch("/dashboard/job-types/" + encodeURIComponent(button.dataset.type) + "/" + action, {
      method: "POST", headers, credentials: "same-origin",
    });
    const body = await res.json().catch(() => ({}));
    if (res.ok) {
      say(body.paused ? body.name + " paused: its jobs wait until resumed" : body.name + " resumed: its jobs run in their turn");
      await refresh();
    } else {
      button.disabled = false;
      button.textContent = label;
      say((action === "pause" ? "Pause" : "Resume") + " refused: " + (body.detail || res.status));
    }
  }

  async function copy(button) {
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      say("Copied " + button.dataset.copy);
    } catch (err) {
      say(button.dataset.copy);  // no clipboard (plain http, old browser): show it to copy by hand
    }
  }

  // The server reads what was typed (a whole id, or a part as the page shows it) and answers
  // the inspector's content: the job, a list to pick from, or the reason nothing matched.
  document.getElementById("find-job").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = event.target.elements.id.value.trim();
    if (!text) { say("Paste a job id, or 8+ hex digits of its start or end as shown (0193…a1b2c3d4)"); return; }
    const res = await fetch("/dashboard/find?id=" + encodeURIComponent(text), { headers, credentials: "same-origin" });
    if (res.status === 401) { location.href = "/dashboard/login"; return; }
    const html = (res.headers.get("content-type") || "").startsWith("text/html");
    inspectorBody.innerHTML = html ? await res.text() : "<div class='error'>could not search (" + res.status + ")</div>";
    inspector.hidden = false;
  });

  async function replay(button) {
    button.disabled = true;
    const res = await fetch(
      "/dashboard/webhooks/deliveries/" + encodeURIComponent(button.dataset.delivery) + "/replay",
      { method: "POST", headers, credentials: "same-origin" },
    );
    if (res.status === 202) {
      say("Delivery " + button.dataset.delivery + " will be sent again");
      await refresh();
    } else {
      const body = await res.json().catch(() => ({}));
      button.disabled = false;
      say("Replay refused: " + (body.detail || res.status));
    }
  }

  document.addEventListener("click", (event) => {
    const target = event.target.closest(
      "a.inspect, button.requeue, button.cancel, button.copy, button.replay, button.pause-type, button.resume-type, #close-inspector",
    );
    if (!target) return;
    event.preventDefault();
    if (target.id === "close-inspector") inspector.hidden = true;
    else if (target.matches("a.inspect")) inspect(target.dataset.job);
    else if (target.matches("button.cancel")) cancel(target);
    else if (target.matches("button.copy")) copy(target);
    else if (target.matches("button.replay")) replay(target);
    else if (target.matches("button.pause-type")) switchType(target, "pause");
    else if (target.matches("button.resume-type")) switchType(target, "resume");
    else requeue(target);
  });
  document.addEventListener("visibilitychange", refresh);
  setInterval(refresh, REFRESH_MS);
})();
