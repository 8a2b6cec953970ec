"""Small server-rendered pages for links people follow from a message: an incident's acknowledge
link (api/routes/actions.py) and a new customer's activation link (api/routes/activations.py).

No script, nothing but the inbox's stylesheet, forms that post back to the page's own origin, and
headers that keep the token in the URL from travelling on (no referrer, no cache).
"""

from __future__ import annotations

import html

from fastapi.responses import HTMLResponse

from api.inbox import STATIC_PATH

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                                "base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never send it on
    "Cache-Control": "no-store",
}


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A page titled `title` around `body`, which the caller has already escaped."""
    document = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{html.escape(title)} · Steward</title>
<link rel="stylesheet" href="{STATIC_PATH}/inbox.css">
</head>
<body>
<header class="top"><div class="wrap"><h1>{html.escape(title)} <span class="brand">Steward</span></h1></div></header>
<main id="main" class="wrap"><section class="panel">{body}</section></main>
</body>
</html>
"""
    return HTMLResponse(document, status_code=status, headers=SECURITY_HEADERS)
