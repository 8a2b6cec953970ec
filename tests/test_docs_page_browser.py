"""The API's self-description, opened in a real browser the way a person following the README would."""

from __future__ import annotations

from playwright.async_api import Page

pytest_plugins = ["tests.browser"]


async def test_openapi_document_opens_in_the_browser_and_lists_the_workflow_routes(page: Page, api_url: str) -> None:
    response = await page.goto(f"{api_url}/openapi.json")

    assert response is not None and response.status == 200
    assert response.headers["content-type"] == "application/json"
    # Parsed by the browser from what it displays, not by us from the wire.
    spec = await page.evaluate("() => JSON.parse(document.querySelector('pre').textContent)")
    assert spec["info"]["title"] == "Steward"
    assert "get" in spec["paths"]["/v1/workflows"]
    assert "post" in spec["paths"]["/v1/workflows/compliance-documentation/runs"]  # one per workflow


async def test_interactive_docs_render_every_route_without_internet(page: Page, api_url: str) -> None:
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    await page.goto(f"{api_url}/docs")
    # Swagger UI draws one block per operation once its (locally served) script has run.
    await page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    paths = await page.locator(".opblock-summary-path").all_inner_texts()
    assert "/v1/workflows/compliance-documentation/runs" in [p.replace("\u200b", "") for p in paths]
    assert "/v1/runs/{run_id}/approvals" in [p.replace("\u200b", "") for p in paths]
    assert failed == []  # nothing was fetched from outside this machine
