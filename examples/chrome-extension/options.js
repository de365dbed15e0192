import { ORIGIN, clientFor, loadSettings, saveSettings } from "./settings.js";
import { describeError } from "./problems.js";

const $ = (id) => document.getElementById(id);

function show(text, kind) {
  const box = $("status");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
}

async function check() {
  const settings = await loadSettings();
  if (!settings.token) return show("Signed out: paste your access token and save.", "problem");
  try {
    const me = await clientFor(settings).me();
    show(`Signed in as ${me.user_id}. Balance: ${me.balance} credits.`, "ok");
  } catch (error) {
    show(describeError(error, settings.apiUrl), "problem");
  }
}

$("origin").textContent = ORIGIN;
const current = await loadSettings();
$("api-url").value = current.apiUrl;
$("token").value = current.token;

$("settings").addEventListener("submit", async (event) => {
  event.preventDefault();
  await saveSettings({ apiUrl: $("api-url").value, token: $("token").value });
  show("Saved.", "ok");
  await check();
});
$("check").addEventListener("click", check);
