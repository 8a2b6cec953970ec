"""The approver's inbox (/inbox) in a real browser: an approver decides a run the way a person would.

Runs are started and checked through the API (alice requests, bob approves in the browser); the page
is driven only through what a person sees and does — labels, roles, the keyboard.
"""

from __future__ import annotations

import re

from playwright.async_api import Locator, Page, Request, expect

from activities.llm.models import LlmCallRecord, LlmUsage, ValidationOutcome
from tests.support import eventually, wait_for_run
from tests.test_approvals import decide, start_approval
from workflows.approvals import shown_digest

pytest_plugins = ["tests.browser"]

TITLE = "KYC review AB123"
LATER_TITLE = "KYC review CD456"
SUMMARY = "High risk: PEP."
SHOWN = {
    "risk_level": "high",
    "reasons": ["Applicant is a politically exposed person.", "Funds arrive from a high-risk jurisdiction."],
    "explanation": "The applicant holds a senior public office; enhanced due diligence applies.",
    "report": {"name": "compliance-report.pdf", "sha256": "ab" * 32},
    # Server text must reach the page as text: markup in a record is shown, never run.
    "analyst_note": "<img src=x onerror=alert(1)> checked by hand",
}
# Playwright's waits are for hangs, not timing: a healthy page answers in well under a second.
WAIT_MS = 30_000
NOT_PENDING = "This approval has already been decided or the run has ended."
UNAUTHENTICATED = "Your token is missing or expired — paste a new one."


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def start_listed_approval(http, auth, approver: dict[str, str], **overrides) -> str:
    """A run by alice, once the approver's inbox lists it (visibility trails the run by a moment)."""
    run_id = await start_approval(http, auth, requester="alice", shown=SHOWN, **overrides)

    async def listed() -> bool:
        response = await http.get("/v1/approvals", headers=approver)
        return run_id in [item["run_id"] for item in response.json()["approvals"]]

    await eventually(listed, "the run in the approver's inbox")
    return run_id


async def sign_in(page: Page, api_url: str, token: str) -> None:
    await page.goto(f"{api_url}/inbox")
    # No token yet and no proxy adding one: the API says 401 and the page asks for a token.
    await expect(page.get_by_text(UNAUTHENTICATED).first).to_be_visible(timeout=WAIT_MS)
    await page.get_by_label("Bearer token").fill(token)
    await page.get_by_role("button", name="Use token").click()


def inbox_entry(page: Page) -> Locator:
    return page.get_by_role("button", name=re.compile(TITLE))


def detail_view(page: Page) -> Locator:
    return page.get_by_role("region", name=TITLE)


async def tab_to(page: Page, target: Locator, limit: int = 40) -> None:
    """Press Tab until `target` has focus, as a keyboard user would; fail if it never does."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await target.evaluate("node => node === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {target}")


async def test_approver_opens_the_record_approves_and_the_receipt_keeps_their_comment(page, http, auth, api_url):
    bob = auth(sub="bob", roles=("approver",))
    run_id = await start_listed_approval(http, auth, bob)
    crashes: list[Exception] = []
    page.on("pageerror", lambda error: crashes.append(error))

    await sign_in(page, api_url, token_of(bob))
    entry = inbox_entry(page)
    await expect(entry).to_be_visible(timeout=WAIT_MS)
    await expect(entry).to_contain_text("test-approval")
    await expect(entry).to_contain_text("requested by alice")
    await expect(entry).to_contain_text("0 of 1 approval")
    await expect(entry).to_contain_text(re.compile(r"Waiting for .+, since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))

    await entry.click()
    detail = detail_view(page)
    await expect(detail).to_be_visible(timeout=WAIT_MS)
    await expect(detail).to_contain_text(SUMMARY)
    await expect(detail).to_contain_text("high")
    for reason in SHOWN["reasons"]:
        await expect(detail.get_by_role("listitem").filter(has_text=reason)).to_be_visible()
    await expect(detail).to_contain_text(SHOWN["explanation"])
    await expect(detail).to_contain_text(SHOWN["analyst_note"])
    assert await detail.locator("img").count() == 0
    await expect(detail).to_contain_text(shown_digest(TITLE, SUMMARY, SHOWN))
    await expect(detail.get_by_role("link", name="Open compliance-report.pdf")).to_have_attribute(
        "href", f"/v1/runs/{run_id}/artifacts/compliance-report.pdf")

    comment = "Checked the PEP register & the <source of funds>."
    await page.get_by_label("Comment").fill(comment)
    await page.get_by_role("button", name="Approve").click()

    receipt = page.get_by_role("region", name="Decision recorded")
    await expect(receipt).to_be_visible(timeout=WAIT_MS)
    await expect(receipt).to_contain_text("bob")
    await expect(receipt).to_contain_text(comment)
    await expect(receipt).to_contain_text("Approved — the run continues.")
    await expect(entry).to_have_count(0)
    await expect(page.get_by_text("Nothing is waiting for your decision.").first).to_be_visible()

    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "completed"
    assert run["result"]["approved"] is True and run["result"]["decided_by"] == ["bob"]
    (receipt_record,) = run["approvals"][0]["receipts"]
    assert (receipt_record["approver"], receipt_record["comment"]) == ("bob", comment)
    assert crashes == []


async def test_an_approval_decided_by_someone_else_meanwhile_is_refused_in_plain_words(page, http, auth, api_url):
    bob = auth(sub="bob", roles=("approver",))
    run_id = await start_listed_approval(http, auth, bob)  # quorum 1: carol's vote settles it
    crashes: list[Exception] = []
    page.on("pageerror", lambda error: crashes.append(error))

    await sign_in(page, api_url, token_of(bob))
    await inbox_entry(page).click(timeout=WAIT_MS)
    await expect(detail_view(page)).to_be_visible(timeout=WAIT_MS)
    carol = await decide(http, auth(sub="carol", roles=("approver",)), run_id)
    assert carol.status_code == 200, carol.text

    await page.get_by_role("button", name="Approve").click()
    refusal = page.get_by_role("alert")
    await expect(refusal).to_have_text(NOT_PENDING, timeout=WAIT_MS)
    assert "not_pending" not in await page.locator("body").inner_text()

    # Still a working page: back to the list, where the settled approval is gone.
    await page.keyboard.press("Escape")
    await expect(detail_view(page)).to_be_hidden()
    await page.get_by_role("button", name="Refresh").click()
    await expect(page.get_by_role("status")).to_have_text("Nothing is waiting for your decision.", timeout=WAIT_MS)
    await expect(inbox_entry(page)).to_have_count(0)
    run = await wait_for_run(http, run_id, auth())
    assert [r["approver"] for r in run["approvals"][0]["receipts"]] == ["carol"]
    assert crashes == []


async def test_the_whole_flow_works_from_the_keyboard(page, http, auth, api_url):
    bob = auth(sub="bob", roles=("approver",))
    run_id = await start_listed_approval(http, auth, bob)
    await page.goto(f"{api_url}/inbox")
    token_field = page.get_by_label("Bearer token")
    await token_field.wait_for(timeout=WAIT_MS)

    await tab_to(page, token_field)
    await page.keyboard.type(token_of(bob))
    await page.keyboard.press("Enter")
    entry = inbox_entry(page)
    await entry.wait_for(timeout=WAIT_MS)

    await tab_to(page, entry)
    await page.keyboard.press("Enter")
    await expect(detail_view(page)).to_be_visible(timeout=WAIT_MS)
    comment = page.get_by_label("Comment")
    await tab_to(page, comment)
    await page.keyboard.type("Decided from the keyboard.")
    await page.keyboard.press("Escape")
    await expect(detail_view(page)).to_be_hidden()
    await expect(entry).to_be_focused()  # Escape returns the keyboard user to where they were

    await page.keyboard.press("Space")
    await expect(detail_view(page)).to_be_visible(timeout=WAIT_MS)
    await expect(comment).to_have_value("Decided from the keyboard.")  # Escape kept the draft
    approve = page.get_by_role("button", name="Approve")
    await tab_to(page, approve)
    outline = await approve.evaluate("node => getComputedStyle(node).outlineStyle")
    assert outline not in ("", "none")  # focus is visible
    await page.keyboard.press("Enter")

    await expect(page.get_by_role("region", name="Decision recorded")).to_be_visible(timeout=WAIT_MS)
    await expect(entry).to_have_count(0)
    run = await wait_for_run(http, run_id, auth())
    assert run["approvals"][0]["receipts"][0]["comment"] == "Decided from the keyboard."


async def test_the_page_talks_only_to_the_api_and_keeps_the_token_out_of_storage_and_urls(page, http, auth, api_url):
    bob = auth(sub="bob", roles=("approver",))
    run_id = await start_listed_approval(http, auth, bob)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    # What the policy blocks never becomes a request: the browser reports it on the console instead.
    blocked: list[str] = []
    page.on("console", lambda message: "Content Security Policy" in message.text and blocked.append(message.text))

    response = await page.goto(f"{api_url}/inbox")
    assert response is not None and response.status == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    await sign_in(page, api_url, token_of(bob))
    await inbox_entry(page).click(timeout=WAIT_MS)

    # The report link needs the token, which a plain link cannot carry: the page fetches it.
    artifact = f"{api_url}/v1/runs/{run_id}/artifacts/compliance-report.pdf"
    async with page.expect_request(artifact, timeout=WAIT_MS) as download:
        await page.get_by_role("link", name="Open compliance-report.pdf").click()
    assert (await download.value).headers["authorization"] == f"Bearer {token_of(bob)}"

    assert requests and all(r.url.startswith(f"{api_url}/") for r in requests), [r.url for r in requests]
    assert blocked == []
    assert not any(token_of(bob) in r.url for r in requests)
    assert await page.evaluate("() => localStorage.length") == 0
    assert await page.evaluate("() => sessionStorage.getItem('steward.inbox.token')") == token_of(bob)


async def test_the_models_assessment_from_the_run_details_is_shown_beside_the_record(page, http, auth, api_url):
    bob = auth(sub="bob", roles=("approver",))
    run_id = await start_listed_approval(http, auth, bob)
    # No fixture workflow both asks a model and asks for approval, so the run's real details are
    # given an LLM ledger on their way to the page, built from the API's own models.
    record = LlmCallRecord(
        step="classify-risk", task="risk-classification", provider="offline", model_requested="gpt-4.1-mini",
        model_version="gpt-4.1-mini-2025-04-14", prompt_template="risk-classification@3", prompt_sha256="cd" * 32,
        decision="high", confidence=0.82, explanation="Name matches a PEP list entry.",
        validation=ValidationOutcome(valid=True),
    )

    async def with_ledger(route) -> None:
        real = await route.fetch()
        body = await real.json()
        body["llm"] = LlmUsage(records=[record]).model_dump(mode="json")
        await route.fulfill(response=real, json=body)

    await page.route(f"{api_url}/v1/runs/{run_id}", with_ledger)
    await sign_in(page, api_url, token_of(bob))
    await inbox_entry(page).click(timeout=WAIT_MS)

    assessment = detail_view(page)
    await expect(assessment).to_contain_text("The model's assessment", timeout=WAIT_MS)
    for text in ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", "82%", "Name matches a PEP list entry."):
        await expect(assessment).to_contain_text(text)


async def test_the_list_follows_the_event_stream_as_approvals_elsewhere_are_decided_requested_and_cancelled(
        page, http, auth, api_url):
    bob = auth(sub="bob", roles=("approver",))
    decided_elsewhere = await start_listed_approval(http, auth, bob)
    crashes: list[Exception] = []
    page.on("pageerror", lambda error: crashes.append(error))

    # Nobody clicks or reloads below, and the page has no timer (it had one of 60 s, past WAIT_MS): only
    # GET /v1/events can tell it in time. Once that answers, the API follows the tenant's log for the page.
    async with page.expect_response(lambda r: r.url.startswith(f"{api_url}/v1/events?"), timeout=WAIT_MS) as opened:
        await sign_in(page, api_url, token_of(bob))
    stream = await opened.value
    assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
    assert stream.request.headers["authorization"] == f"Bearer {token_of(bob)}"
    assert token_of(bob) not in stream.url
    await expect(inbox_entry(page)).to_have_count(1, timeout=WAIT_MS)

    carol = await decide(http, auth(sub="carol", roles=("approver",)), decided_elsewhere)
    assert carol.status_code == 200, carol.text
    await expect(inbox_entry(page)).to_have_count(0, timeout=WAIT_MS)

    requested_later = await start_approval(http, auth, requester="alice", title=LATER_TITLE, shown=SHOWN)
    later = page.get_by_role("button", name=re.compile(LATER_TITLE))
    await expect(later).to_be_visible(timeout=WAIT_MS)
    cancelled = await http.post(f"/v1/runs/{requested_later}/cancel", headers=auth())
    assert cancelled.status_code == 202, cancelled.text
    await expect(later).to_have_count(0, timeout=WAIT_MS)
    assert crashes == []
