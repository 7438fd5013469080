"""The dashboard in real headless Chromium, driven by Playwright, against a real server."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from .helpers import REPO_ROOT, ServerProcess
from .tasks_for_tests import MARKUP

MakeServer = Callable[..., ServerProcess]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "artifacts"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        reason = f"Chromium not found at {CHROMIUM}; install Debian's chromium package"
        if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
            pytest.fail(f"{reason} (REQUIRE_BROWSER_TESTS=1 forbids skipping)")
        pytest.skip(reason)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await context.new_page()
    yield opened
    await context.close()


async def started(make_server: MakeServer, **env: str) -> ServerProcess:
    server = make_server(SCHEDULER_TASKS="tests.tasks_for_tests", **env)
    server.start()
    await server.wait_ready()
    return server


async def submit_from_form(page: Page, task: str, params: str) -> None:
    await page.select_option("#task", task)
    await page.fill("#params", params)
    await page.click("#submit-button")


def countdown_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+) s", text.strip())
    assert match, f"unexpected countdown text {text!r}"
    return int(match.group(1))


async def screenshot(page: Page, name: str) -> None:
    # Playwright creates the folder.
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_dashboard_job_counts_down_and_succeeds(make_server: MakeServer, page: Page) -> None:
    server = await started(make_server)
    await page.goto(server.base_url + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    await submit_from_form(page, "sleep", '{"seconds": 3}')

    row = page.locator("#jobs-body tr").first
    await expect(row.locator(".status")).to_contain_text("running", timeout=5000)
    countdown = row.locator(".countdown")
    await expect(countdown).to_have_text(re.compile(r"^[23] s$"), timeout=5000)
    first = countdown_seconds(await countdown.inner_text())
    await expect(countdown).to_have_text(f"{first - 1} s", timeout=3000)
    await screenshot(page, "dashboard-running")

    await expect(row.locator(".status")).to_contain_text("succeeded", timeout=10_000)
    await expect(countdown).to_have_text("done")
    await expect(page.locator("#announcer")).to_contain_text("succeeded")
    await screenshot(page, "dashboard-succeeded")


async def test_dashboard_catches_up_after_restart(make_server: MakeServer, page: Page) -> None:
    server = await started(make_server, SCHEDULER_SHUTDOWN_GRACE="10")
    await page.goto(server.base_url + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await submit_from_form(page, "sleep", '{"seconds": 2}')
    row = page.locator("#jobs-body tr").first
    await expect(row.locator(".status")).to_contain_text("running", timeout=5000)

    # The job finishes during the graceful shutdown, while the page is disconnected.
    assert server.terminate() == 0
    await expect(page.locator("#connection")).to_have_attribute(
        "data-state", re.compile("reconnecting|polling"), timeout=10_000
    )
    await screenshot(page, "dashboard-reconnecting")
    server.start()
    await server.wait_ready()

    await expect(page.locator("#connection")).to_have_attribute(
        "data-state", "live", timeout=20_000
    )
    await expect(row.locator(".status")).to_contain_text("succeeded", timeout=10_000)
    await screenshot(page, "dashboard-caught-up")


async def test_dashboard_renders_job_text_as_text(make_server: MakeServer, page: Page) -> None:
    server = await started(make_server)
    response = await page.goto(server.base_url + "/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy

    await submit_from_form(page, "test.markup", "{}")

    row = page.locator("#jobs-body tr").first
    await expect(row.locator(".status")).to_contain_text("failed", timeout=10_000)
    await row.click()
    await expect(page.locator("#detail-error")).to_have_text(f"ValueError: {MARKUP}")
    assert await page.evaluate("window.__injected === undefined")
    assert await page.locator("img").count() == 0


async def test_dashboard_cancel_button_cancels_job(make_server: MakeServer, page: Page) -> None:
    server = await started(make_server)
    await page.goto(server.base_url + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await submit_from_form(page, "sleep", '{"seconds": 60}')
    row = page.locator("#jobs-body tr").first
    await expect(row.locator(".status")).to_contain_text("running", timeout=5000)

    await row.locator("button.cancel").click()

    await expect(row.locator(".status")).to_contain_text("cancelled", timeout=10_000)
    await expect(row.locator("button.cancel")).to_be_hidden()


async def test_dashboard_shows_api_error_for_bad_params(
    make_server: MakeServer, page: Page
) -> None:
    server = await started(make_server)
    await page.goto(server.base_url + "/")

    await submit_from_form(page, "sleep", '{"seconds": -5}')
    await expect(page.locator("#submit-error")).to_contain_text("params.seconds")

    await submit_from_form(page, "sleep", "{not json")
    await expect(page.locator("#submit-error")).to_contain_text("not valid JSON")
    assert await page.locator("#jobs-body tr").count() == 0


async def test_dashboard_falls_back_to_polling(make_server: MakeServer, page: Page) -> None:
    server = await started(make_server, SCHEDULER_MAX_STREAMS="1")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        response = await client.post("/api/jobs", json={"task": "sleep", "params": {"seconds": 60}})
        job_id = response.json()["id"]
        # Hold the only stream slot, so the page's EventSource gets 503 and gives up.
        async with client.stream("GET", f"/api/jobs/{job_id}/events") as held:
            assert held.status_code == 200
            await page.goto(server.base_url + "/")
            await expect(page.locator("#connection")).to_have_attribute(
                "data-state", "polling", timeout=10_000
            )
            await client.delete(f"/api/jobs/{job_id}")
            row = page.locator("#jobs-body tr").first
            await expect(row.locator(".status")).to_contain_text("cancelled", timeout=10_000)
            await screenshot(page, "dashboard-polling")


async def test_dashboard_fits_a_phone(make_server: MakeServer, browser: Browser) -> None:
    server = await started(make_server)
    context = await browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    phone = await context.new_page()
    try:
        await phone.goto(server.base_url + "/")
        await submit_from_form(phone, "sleep", '{"seconds": 1}')
        await expect(phone.locator("#jobs-body tr").first).to_be_visible()
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        await screenshot(phone, "dashboard-phone-dark")
    finally:
        await context.close()


async def test_api_docs_page_renders_operations(make_server: MakeServer, page: Page) -> None:
    # The Swagger UI must understand the OpenAPI version that /openapi.json declares.
    server = await started(make_server)

    await page.goto(server.base_url + "/docs")
    await page.wait_for_selector(".opblock", timeout=15_000)
    await screenshot(page, "api-docs")

    assert await page.locator(".opblock").count() >= 5
    assert await page.locator("text=Unable to render this definition").count() == 0
