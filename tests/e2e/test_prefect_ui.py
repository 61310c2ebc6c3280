"""A release as users watch it: the Prefect UI, in headless Chromium (Debian's), shows the run,
its state and its artifacts. The screenshot is kept under build/test-artifacts/ (CI artifact),
not compared against a golden image."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from flows.release import canary_release
from tests.e2e.conftest import FAST_SPEC, ROOT

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("CANARYFLOW_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))


def only_loopback(route) -> None:
    """The UI calls outside hosts (fonts, the v2 UI's remote config); this machine has loopback only."""
    if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by scripts/bootstrap")
def test_a_release_is_shown_in_the_prefect_ui_with_its_artifacts(prefect_server, stack):
    from playwright.sync_api import expect, sync_playwright

    state = canary_release({**FAST_SPEC, "version": "v2"}, return_state=True)
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.route("**/*", only_loopback)
            page.goto(f"{prefect_server.ui_url}/runs/flow-run/{run_id}", wait_until="domcontentloaded")
            expect(page.get_by_text("release/checkout/v2/production").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Completed").first).to_be_visible(timeout=30_000)
            page.screenshot(path=SHOTS / "prefect-ui-flow-run.png", full_page=True)

            page.get_by_text("Artifacts", exact=True).first.click()
            for key in ("release-checkout-summary", "release-checkout-analysis"):
                expect(page.get_by_text(key).first).to_be_visible(timeout=30_000)
            page.screenshot(path=SHOTS / "prefect-ui-artifacts.png", full_page=True)

            page.get_by_text("release-checkout-summary").first.click()  # the summary's own page
            expect(page.get_by_text("Promoted: checkout v2 (production)").first).to_be_visible(timeout=30_000)
            chart = page.locator('img[alt="canary vs baseline over the release"]').first
            expect(chart).to_be_visible(timeout=30_000)  # the chart renders offline, from its data URI
            assert chart.evaluate("img => img.naturalWidth") > 300
            page.screenshot(path=SHOTS / "prefect-ui-summary.png", full_page=True)
        finally:
            browser.close()
    assert (SHOTS / "prefect-ui-flow-run.png").stat().st_size > 10_000
