"""The API's self-description, opened in a real browser the way a person following the README would.

Only /openapi.json is tested: FastAPI's /docs (Swagger UI) and /redoc pages load their JavaScript
and CSS from a CDN, so on a machine without internet they render a blank page.
"""

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
    assert "post" in spec["paths"]["/v1/workflows/{name}/runs"]
