// Codec sign-in: trades a pasted operator token for an HttpOnly session cookie scoped to /codec.
// The token is sent once and never stored by this page.
"use strict";
const form = document.getElementById("codec-sign-in");
const status = document.getElementById("status");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.getElementById("token").value.trim();
  status.textContent = "Signing in…";
  try {
    const response = await fetch("/codec/session", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      document.getElementById("token").value = "";
      status.textContent = `Signed in as ${body.sub} (${body.tenant}). The Temporal UI can now decrypt payloads in this browser.`;
    } else if (response.status === 403) {
      status.textContent = "This token may not decrypt payloads: it needs the codec:decode permission (operator or admin).";
    } else {
      status.textContent = "The token is missing, malformed or expired.";
    }
  } catch {
    status.textContent = "Steward is not reachable.";
  }
});
document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await fetch("/codec/session", { method: "DELETE" });
    status.textContent = "Signed out. The Temporal UI shows payloads encrypted again in this browser.";
  } catch {
    status.textContent = "Steward is not reachable.";
  }
});
