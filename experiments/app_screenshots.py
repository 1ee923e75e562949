"""Regenerate the app screenshots in docs/img/ (app_crypto_winter*_month12, app_asic_2022_month6).

Usage: python experiments/app_screenshots.py [--chromium /usr/bin/chromium]

Starts ``liqsim app crypto_winter`` on a free localhost port (the command line of
:func:`sim.views.app.server_command`), opens it in headless Chromium through Playwright, steps the
model to month 12 and takes a full-page screenshot; then ticks "Repo desk on" (the run restarts),
steps to month 12 again and takes the second; then picks asic_2022 (every control takes its
values) and steps to month 6 for the third. The server is always stopped at the end.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from sim.views.app import (
    HEADLESS_CHROMIUM_ARGS,
    free_port,
    server_command,
    stop_server,
    url,
    wait_until_up,
)

OUT = Path("docs/img")
MONTH = 12
WAIT_MS = 60_000
VIEWPORT = {"width": 1400, "height": 2250}  # tall: the page scrolls inside, not the window


def _step_to(page, month: int, of: int = 60) -> None:
    """Press Step until the counter reads ``month``, then let every figure be re-sent."""
    for m in range(1, month + 1):
        page.get_by_role("button", name="Step").click()
        page.get_by_text(f"Month {m} of {of}").wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(3000)


def shoot(url: str, chromium: str) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    plain, repo = OUT / "app_crypto_winter_month12.png", OUT / "app_crypto_winter_repo_month12.png"
    asic = OUT / "app_asic_2022_month6.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=list(HEADLESS_CHROMIUM_ARGS))
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(url)
            page.get_by_text(re.compile(r"Month 0 of 60")).wait_for(timeout=WAIT_MS)
            page.wait_for_function("document.querySelectorAll('img').length >= 6",
                                   timeout=WAIT_MS)
            _step_to(page, MONTH)
            page.screenshot(path=plain, full_page=True)
            page.get_by_text("Repo desk on", exact=True).click()  # restarts at month 0
            page.get_by_text(re.compile(r"· repo desk on")).wait_for(timeout=WAIT_MS)
            _step_to(page, MONTH)
            page.screenshot(path=repo, full_page=True)
            page.locator(".v-select").first.click()  # the scenario picker
            page.get_by_role("option", name="asic_2022").click()
            page.get_by_text(re.compile(r"asic_2022 · seed")).wait_for(timeout=WAIT_MS)
            _step_to(page, 6, of=12)
            page.screenshot(path=asic, full_page=True)
        finally:
            browser.close()
    return [plain, repo, asic]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    port = free_port()
    argv, env = server_command("127.0.0.1", port, "crypto_winter")
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            address = url("127.0.0.1", port)
            wait_until_up(proc, address, log=log)
            for path in shoot(address, args.chromium):
                print(f"written {path}")
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
