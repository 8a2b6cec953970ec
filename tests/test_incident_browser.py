"""Acknowledging an incident from the page's e-mail, in a real browser: the link is followed the
way a person follows it — opening it changes nothing, the button on it acknowledges."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.incident_fixtures import fire, incident_where, recipients, run_of
from tests.support import eventually

pytest_plugins = ["tests.browser", "tests.incident_fixtures"]

WAIT_MS = 30_000
EMAIL_ONLY = """\
version: 1
routes:
  - name: email
    match: {}
    steps:
      - after: PT0S
        page:
          - name: on-call
            via: [{channel: email, to: oncall}]
"""


def ack_link(outside, run_id: str) -> str:
    message = next(m for m in outside.smtp.mailbox.messages if run_id in m.get_body(("plain",)).get_content())
    return next(word for word in message.get_body(("plain",)).get_content().split() if "/act/" in word)


async def test_the_acknowledge_link_in_the_email_acknowledges_only_when_its_button_is_pressed(
        page: Page, http, auth, api_url, alertmanager_key, pages, group):
    pages.route(EMAIL_ONLY, public_url=api_url)
    run_id = (await fire(http, alertmanager_key, "firing", group))["incident"]
    await eventually(lambda: _emailed(pages, run_id), "the page by e-mail")
    link = ack_link(pages, run_id)
    assert link.startswith(f"{api_url}/act/")

    await page.goto(link)  # what a mail scanner does too
    await expect(page.get_by_role("heading", name="Acknowledge the incident")).to_be_visible(timeout=WAIT_MS)
    await expect(page.get_by_text("payments-api pods are crash looping")).to_be_visible()
    await expect(page.get_by_text("oncall@example.com")).to_be_visible()
    assert (await run_of(http, auth, run_id))["incident"]["state"] == "triggered"

    await page.get_by_role("button", name="Acknowledge").click()
    await expect(page.get_by_role("heading", name="Acknowledged")).to_be_visible(timeout=WAIT_MS)
    incident = await incident_where(http, auth, run_id, "the acknowledgement", lambda i: i["acknowledged"])
    assert (incident["acknowledged"]["by"], incident["acknowledged"]["via"]) == ("oncall@example.com", "link")

    await page.goto(link)  # used again: nothing left to do
    await expect(page.get_by_role("heading", name="Nothing to acknowledge")).to_be_visible(timeout=WAIT_MS)


async def test_a_link_that_was_altered_is_refused(page: Page, http, api_url, alertmanager_key, pages, group):
    pages.route(EMAIL_ONLY, public_url=api_url)
    run_id = (await fire(http, alertmanager_key, "firing", group))["incident"]
    await eventually(lambda: _emailed(pages, run_id), "the page by e-mail")
    link = ack_link(pages, run_id)
    tampered = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")

    response = await page.goto(tampered)

    assert response.status == 400
    await expect(page.get_by_role("heading", name="Link not valid")).to_be_visible(timeout=WAIT_MS)
    posted = await http.post(tampered.removeprefix(api_url))
    assert posted.status_code == 400


async def _emailed(outside, run_id: str) -> bool:
    return bool(recipients(outside, run_id))
