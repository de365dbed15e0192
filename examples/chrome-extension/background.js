// The service worker: takes a selected review, keeps it in session storage before anything
// else can fail, and opens the reply window, which does the API work.
//
// The selection comes from the context menu ("Draft a reply"), the keyboard shortcut or the
// toolbar button. The last two read it from the tab with activeTab, which the user's gesture
// grants for that tab alone: the extension has no standing access to any site (no install
// warning), and so its calls to aijobs are cross-origin requests the API allows by CORS.
const MENU_ID = "draft-reply";

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.create({ id: MENU_ID, title: "Draft a reply", contexts: ["selection"] });
});

chrome.contextMenus.onClicked.addListener((info, tab) => {
  if (info.menuItemId === MENU_ID && info.selectionText) draft(info.selectionText, tab?.url ?? null);
});

chrome.commands.onCommand.addListener((command, tab) => {
  if (command === "draft-reply") draftFromTab(tab);
});

chrome.action.onClicked.addListener((tab) => draftFromTab(tab));

async function draftFromTab(tab) {
  const text = await selectionIn(tab);
  if (text.trim()) await draft(text, tab.url ?? null);
  else await openReplyWindow(); // nothing selected: show the last draft
}

/** The text selected in `tab`, or "" (nothing selected, or a page no extension may script,
 * such as chrome:// pages). The activeTab grant that comes with the click has been seen to
 * land a moment after the click's event (Chromium 156), so a refusal is asked again twice. */
async function selectionIn(tab) {
  for (let attempt = 0; ; attempt++) {
    try {
      const [frame] = await chrome.scripting.executeScript({
        target: { tabId: tab.id },
        func: () => String(window.getSelection() ?? ""),
      });
      return frame?.result ?? "";
    } catch (error) {
      if (attempt >= 2) return "";
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function draft(text, pageUrl) {
  // A new draft: no job yet, and its own Idempotency-Key (the reply window makes one).
  await chrome.storage.session.set({ draft: { text: text.trim(), pageUrl, jobId: null, key: null } });
  await openReplyWindow();
}

async function openReplyWindow() {
  await chrome.windows.create({ url: chrome.runtime.getURL("reply.html"), type: "popup", width: 520, height: 640 });
}
