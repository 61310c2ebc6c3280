"""The docs site builds with ``mkdocs build --strict`` (a broken link, anchor, snippet or a page left
out of the navigation fails it), offline, and its pages render in headless Chromium.

The build goes to a temporary site directory, once for this module (about 10 s on 2 cores). The
screenshot is kept under build/test-artifacts/ as the Prefect UI test keeps its own, not compared
with a golden image.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("CANARYFLOW_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))


def nav_pages(nav: list) -> Iterator[str]:
    for entry in nav:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            if isinstance(value, list):
                yield from nav_pages(value)
            else:
                yield value


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    # mkdocs-material prints a notice about MkDocs 2 unless told not to; offline, nothing else is fetched.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    return out


def test_every_page_in_the_navigation_is_built(site):
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    pages = list(nav_pages(config["nav"]))
    assert len(pages) >= 25
    for page in pages:
        stem = page.removesuffix(".md").removesuffix("index")  # reference/index.md is reference/index.html
        built = site / stem / "index.html" if stem else site / "index.html"
        assert built.is_file(), page


def test_generated_reference_and_included_files_reach_the_site(site):
    spec = (site / "reference" / "spec" / "index.html").read_text()
    assert "max_error_rate" in spec and 'id="kubernetes"' in spec
    assert "rbac.authorization.k8s.io" in (site / "platforms" / "rbac" / "index.html").read_text()
    assert "DeploymentRollbackDetected" in (site / "operating" / "runbooks" / "index.html").read_text()
    judge = (site / "concepts" / "judge" / "index.html").read_text()
    assert "Flagger 5" in judge and "new judge" in judge  # the detection table, from its one snippet
    assert "--8&lt;--" not in judge


def test_the_site_is_searchable_and_needs_no_outside_host(site):
    index = json.loads((site / "search" / "search_index.json").read_text())
    assert any("CANARYFLOW_PROMETHEUS_URL" in doc["text"] for doc in index["docs"])
    outside = set()
    for page in site.rglob("*.html"):
        for url in re.findall(r'(?:src|href)="(https?://[^"]+)"', page.read_text()):
            if urlparse(url).hostname not in ("127.0.0.1", "localhost"):
                outside.add(url)
    # links a reader may follow are fine; what the page itself loads (fonts, scripts) must be local
    loaded = [u for u in outside if re.search(r"\.(css|js|woff2?)(\?|$)", u) or "fonts.g" in u]
    assert loaded == []


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is installed by scripts/bootstrap")
def test_a_reference_page_renders_in_headless_chromium_offline(site):
    from playwright.sync_api import expect, sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    blocked: list[str] = []

    def only_loopback(route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.route("**/*", only_loopback)
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/reference/spec/", wait_until="load")
                expect(page.get_by_role("heading", name="Release spec").first).to_be_visible(timeout=30_000)
                row = page.locator("table tr", has_text="max_error_rate").first
                expect(row).to_be_visible(timeout=30_000)
                # the navigation is there, and the theme's stylesheet applied (a sidebar, not a bare list)
                expect(page.get_by_role("link", name="How the judge decides").first).to_be_visible()
                assert page.locator(".md-sidebar--primary").first.bounding_box()["width"] > 100
                page.screenshot(path=SHOTS / "docs-reference-spec.png", full_page=False)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert blocked == []
    assert (SHOTS / "docs-reference-spec.png").stat().st_size > 10_000
