"""The approver's inbox: one HTML page over GET /v1/approvals and POST /v1/runs/{id}/approvals.

The page is a shell; api/static/inbox.js does the work through the public API, with the same
token any other client would use. The HTML lives here rather than in api/static/ so it is only
ever served with its security headers: everything under the static mount goes out without them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static/inbox"

router = APIRouter(include_in_schema=False)

# The page loads nothing but its own script and stylesheet and talks only to this API, so the
# policy can forbid everything else: an injected <script> or an exfiltrating fetch has nowhere to go.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new deploy's page must not pair with yesterday's script; the assets are tiny.
    "Cache-Control": "no-cache",
}

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Approvals · Steward</title>
<link rel="stylesheet" href="{STATIC_PATH}/inbox.css">
<script src="{STATIC_PATH}/inbox.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to the approvals</a>
<header class="top">
  <div class="wrap">
    <h1>Approvals <span class="brand">Steward</span></h1>
    <div class="session" id="session" hidden>
      <span>Using a pasted token.</span>
      <button type="button" id="forget-token" class="link">Forget token</button>
    </div>
  </div>
</header>
<main id="main" class="wrap" tabindex="-1">
  <p id="status" class="status" role="status" aria-live="polite"></p>

  <form id="token-form" class="panel token" hidden>
    <h2>Sign in</h2>
    <p class="muted">Paste your Steward token to see the approvals waiting for you. For development,
      <code>steward token --sub you --role approver</code> prints one.</p>
    <label for="token">Bearer token</label>
    <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required
           aria-describedby="token-help">
    <p id="token-help" class="muted">Kept in this browser tab only, until you close it.</p>
    <button type="submit" class="primary">Use token</button>
  </form>

  <section id="receipt" class="panel receipt" hidden aria-labelledby="receipt-heading">
    <h2 id="receipt-heading" tabindex="-1">Decision recorded</h2>
    <dl id="receipt-fields" class="fields"></dl>
    <button type="button" id="receipt-close" class="link">Dismiss</button>
  </section>

  <section id="list-view" aria-labelledby="list-heading" hidden>
    <div class="list-head">
      <h2 id="list-heading" tabindex="-1">Waiting for your decision</h2>
      <button type="button" id="refresh">Refresh</button>
    </div>
    <p id="empty" class="muted" hidden>Nothing is waiting for your decision.</p>
    <ul id="items" class="items"></ul>
    <button type="button" id="more" hidden>Show more</button>
  </section>

  <section id="detail" class="panel detail" hidden aria-labelledby="detail-title">
    <button type="button" id="detail-close" class="link back">← Back to the list
      <span class="muted">(Esc)</span></button>
    <h2 id="detail-title" tabindex="-1"></h2>
    <dl id="detail-meta" class="fields meta"></dl>
    <h3>Summary</h3>
    <p id="detail-summary" class="summary"></p>
    <div id="detail-shown"></div>
    <div id="detail-llm"></div>
    <h3>What you are deciding on</h3>
    <p class="muted">Your receipt records this SHA-256 of the title, summary and records above:</p>
    <p><code id="detail-digest" class="digest"></code></p>
    <form id="decide-form" class="decide">
      <h3>Your decision</h3>
      <label for="comment">Comment <span class="muted">(recorded on the receipt)</span></label>
      <textarea id="comment" name="comment" rows="3" maxlength="2000"></textarea>
      <p id="decide-error" class="error" role="alert" hidden></p>
      <div class="actions">
        <button type="submit" name="decision" value="approve" class="primary">Approve</button>
        <button type="submit" name="decision" value="reject" class="danger">Reject</button>
      </div>
    </form>
  </section>
</main>
</body>
</html>
"""


@router.get("/inbox", response_class=HTMLResponse)
async def inbox_page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers=SECURITY_HEADERS)
