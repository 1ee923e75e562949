"""The app in a real headless Chromium (Debian's ``chromium`` driven by Playwright).

The server is ``liqsim app``'s own command line (:func:`sim.views.app.server_command`), started on a
free localhost port and always stopped at the end. The page must work offline: every request
the browser makes goes to the local server.
"""

from __future__ import annotations

import re
import subprocess
import time
from urllib.parse import urlparse

import pytest
from playwright.sync_api import sync_playwright

from sim.views.app import free_port, server_command, short_repr, stop_server, wait_until_up

# the app's server and Chromium (the set-up tests below check how a missing browser is handled)
pytestmark = [pytest.mark.browser, pytest.mark.slow]

START_TIMEOUT = 90.0  # seconds for the server to answer (imports are slow on a busy machine)
WAIT_MS = 60_000  # for anything on the page
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``liqsim app crypto_winter`` on a free port; yields its URL; the process is always killed."""
    port = free_port()
    argv, env = server_command("127.0.0.1", port, "crypto_winter")
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w+")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(proc, url, START_TIMEOUT, log)
        yield url
    finally:
        stop_server(proc)
        log.close()


@pytest.fixture(scope="module")
def browser(chromium_launch):
    with sync_playwright() as p:
        b = p.chromium.launch(**chromium_launch)
        try:
            yield b
        finally:
            b.close()


def _open(context, url: str, requests: list[str], problems: list | None = None):
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    if problems is not None:  # failed requests (404s) and console errors
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                if r.status >= 400 else None)
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
    page.goto(url)
    page.get_by_text(re.compile(r"Month 0 of 60")).wait_for(timeout=WAIT_MS)
    page.wait_for_function("document.querySelectorAll('img').length >= 6", timeout=WAIT_MS)
    return page


def _month(page) -> int:
    text = page.get_by_text(re.compile(r"Month \d+ of 60")).inner_text()
    return int(re.search(r"Month (\d+) of", text).group(1))


def _step(page, to_month: int) -> None:
    page.get_by_role("button", name="Step").click()
    page.get_by_text(f"Month {to_month} of 60").wait_for(timeout=WAIT_MS)


STEP_DONE = """([k, old]) => document.body.innerText.includes(`Month ${k} of`) && (() => {
    const now = [...document.querySelectorAll('img')].map(e => e.src);
    return now.length === old.length && now.filter((s, i) => s !== old[i]).length >= 5; })()"""


def timed_step(page, to_month: int) -> float:
    """Seconds from the click on Step until the counter reads ``to_month`` and at least five
    of the six panels show a new picture (what a student waits for)."""
    old = _image_sources(page)
    t0 = time.perf_counter()
    page.get_by_role("button", name="Step").click()
    page.wait_for_function(STEP_DONE, arg=[to_month, old], timeout=WAIT_MS, polling=5)
    return time.perf_counter() - t0


def _image_sources(page) -> list[str]:
    return page.eval_on_selector_all("img", "els => els.map(e => e.src)")


def _images(page, n: int = 6) -> list[str]:
    """The panels' image sources once ``n`` images are on the page: a panel that re-renders
    replaces its ``img`` for a moment (CI once read 5 of the 6 right after the page loaded)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    srcs = _image_sources(page)
    while len(srcs) < n and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        srcs = _image_sources(page)
    return srcs


def _settled_images(page, before: list[str]) -> list[str]:
    """The images once every figure has been re-sent (each panel changes with the month)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    now = _images(page, len(before))
    while time.monotonic() < deadline and (
            len(now) != len(before)
            or sum(a != b for a, b in zip(before, now, strict=True)) < 5):
        page.wait_for_timeout(200)
        now = _images(page, len(before))
    return now


def test_step_play_repo_and_reset_in_chromium(server, browser, tmp_path):
    requests: list[str] = []
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = _open(context, server, requests, problems)
    page.screenshot(path=tmp_path / "month0.png", full_page=True)
    assert _month(page) == 0
    assert "crypto_winter" in page.content()
    text = page.inner_text("body")
    # slider values are on the page without touching the sliders
    assert "Loan-to-value at origination: 0.75" in text
    # crypto_winter keeps the default per-chip rent decline, 15 %/yr (docs/calibration.md)
    assert "Rent deflation (a year): 15%" in text
    # no Mesa chrome; a plain-language account of the month instead
    for noise in ("PAGE 0", "Use Threads", "Render Interval", "Time:"):
        assert noise not in text
    assert "What happened in Dec 2025" in text and "Month 0 is the starting point" in text
    before = _images(page)
    assert len(before) >= 6

    for month in (1, 2, 3):
        _step(page, month)
    after = _settled_images(page, before)
    page.screenshot(path=tmp_path / "month3.png", full_page=True)
    assert _month(page) == 3
    assert sum(a != b for a, b in zip(before, after, strict=True)) >= 5  # the plots moved on

    # a second tab gets its own model: it starts at month 0 and does not move the first tab
    other = _open(context, server, requests)
    _step(other, 1)
    assert _month(other) == 1 and _month(page) == 3
    other.close()

    assert "What happened in Mar 2026" in page.inner_text("body")
    page.get_by_text("Repo desk on", exact=True).click()  # Vuetify's ripple covers the box
    page.wait_for_function("document.querySelector('input[aria-checked=\"true\"]') !== null",
                           timeout=WAIT_MS)
    assert page.get_by_label("Repo desk on").is_checked()
    page.get_by_text(re.compile(r"· repo desk on")).wait_for(timeout=WAIT_MS)  # case matters
    assert _month(page) == 0  # a changed control restarts the run with it
    page.get_by_role("button", name="Reset").click()
    assert _month(page) == 0
    _step(page, 1)
    page.screenshot(path=tmp_path / "repo_on.png", full_page=True)

    # switching scenario sets every control to the new scenario's values
    page.locator(".v-select").first.click()  # the scenario picker (the only select)
    page.get_by_role("option", name="asic_2022").click()
    page.get_by_text(re.compile(r"asic_2022 · seed")).wait_for(timeout=WAIT_MS)
    page.get_by_text(re.compile(r"· repo desk off")).wait_for(timeout=WAIT_MS)
    assert not page.get_by_label("Repo desk on").is_checked()
    page.wait_for_timeout(1500)  # the slider's own snapping to its grid has been answered
    text = page.inner_text("body")
    assert "Rent deflation (a year): 29%" in text  # asic_2022's 0.2857, not snapped to 0.30
    assert "rent deflation 29%/yr" in text
    assert "2022 crypto-miner episode" in text  # its description
    page.screenshot(path=tmp_path / "asic_2022.png", full_page=True)
    context.close()
    assert problems == []  # no 404 (KaTeX assets), no console error

    hosts = {urlparse(u).hostname for u in requests if urlparse(u).scheme in ("http", "https",
                                                                              "ws", "wss")}
    assert hosts <= LOCAL_HOSTS, f"requests left the machine: {hosts - LOCAL_HOSTS}"
    for name in ("month0.png", "month3.png", "repo_on.png", "asic_2022.png"):
        assert (tmp_path / name).stat().st_size > 20_000


# The server's share of a Step is held under 0.2 s of CPU by tests/views/test_app.py; click to
# picture in a browser on a shared, often busy machine is held to this looser bound (measured
# here: 0.23-0.29 s median through Playwright's click under load 5-7, 0.15 s timed inside the
# page; the old page took 1.2-2.4 s), so that a busy CI machine does not fail it by chance.
STEP_SECONDS = 1.0


def test_a_step_is_quick_in_chromium(server, browser):
    """Click to picture: the median of 12 Steps, with the month counter and the panels
    updated, measured in the browser. The app's panels are redrawn by blitting
    (sim.views.app_panels); before that, a Step took 0.5-0.9 s on a quiet machine."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = _open(context, server, [])
    page.wait_for_timeout(500)
    times = [timed_step(page, k) for k in range(1, 13)]
    context.close()
    median = sorted(times)[len(times) // 2]
    print(f"Step, click to picture: median {median:.3f} s, "
          f"all {' '.join(f'{x:.3f}' for x in times)}")
    assert median < STEP_SECONDS, times


@pytest.fixture
def no_browser(monkeypatch, tmp_path):
    """A machine without Chromium and without apt-get."""
    import conftest

    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "chromium")
    monkeypatch.setattr(conftest.shutil, "which", lambda _name: None)
    return conftest


def test_missing_browser_skips_with_a_reason(no_browser, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert "apt-get is not available" in no_browser.ensure_chromium()
    with pytest.raises(pytest.skip.Exception, match="headless Chromium unavailable"):
        no_browser.require_chromium()


def test_missing_browser_fails_under_ci(no_browser, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get is not available"):
        no_browser.require_chromium()


# --------------------------------------------------------------------------- hostile page
# Issue 20: the browser can send any JSON value for any control, not only what the page lists.
# These are sent through the controls' own Vue components, as a crafted page would.
HOSTILE_SCENARIOS = ["/etc/passwd", "/proc/self/environ", "large", "..",
                     "../../../../etc/passwd", "experiments/scenarios/large.toml",
                     "<img src=x onerror=alert(1)>", {"a": 1}, ["baseline"], 12345, None,
                     "x" * 100_000]
STARTS_ON = "crypto_winter"


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory):
    """``liqsim app crypto_winter --scenario-dir DIR``: DIR holds one scenario, a link to
    /etc/passwd named like one, and a large world; yields (url, DIR)."""
    d = tmp_path_factory.mktemp("scenarios")
    (d / "mine.toml").write_text('name = "mine"\nmonths = 60\n', encoding="utf-8")
    (d / "passwd.toml").symlink_to("/etc/passwd")
    (d / "huge.toml").write_text("[borrowers.miner]\ncount = 20000\n", encoding="utf-8")
    port = free_port()
    argv, env = server_command("127.0.0.1", port, STARTS_ON, d)
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w+")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(proc, url, START_TIMEOUT, log)
        yield url, d
    finally:
        stop_server(proc)
        log.close()


PICKER_JS = """() => [...document.querySelectorAll('.v-select')].map(e => e.__vue__)
                 .find(vm => vm && vm.label === 'Scenario')"""


def _pick(page, value) -> None:
    """Set the picker to ``value`` the way its Vue component reports a choice."""
    page.evaluate(f"(value) => {{ const vm = ({PICKER_JS})(); vm.$emit('change', value); "
                  "vm.$emit('input', value); }", value)


def _alerts(page) -> list[str]:
    return page.eval_on_selector_all(".v-alert", "els => els.map(e => e.innerText)")


def test_the_page_loads_only_what_the_server_offers(guarded_server, browser):
    url, d = guarded_server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = _open(context, url, [])
    items = page.evaluate(f"() => ({PICKER_JS})().items")
    assert str(d / "mine.toml") in items and STARTS_ON in items
    assert not any(str(i).endswith(("passwd.toml", "huge.toml")) or i == "large" for i in items)

    for value in HOSTILE_SCENARIOS:
        _pick(page, value)
        page.get_by_text(f"scenario {short_repr(value, 60)} is not one this app offers"
                         ).first.wait_for(timeout=WAIT_MS)
        body = page.inner_text("body")
        assert "Traceback" not in body and "root:" not in body and "PATH=" not in body, value
        assert f"{STARTS_ON} · seed" in body, value  # the month counter: the starting scenario
        alerts = _alerts(page)
        assert len(alerts) == 1 and "\n" not in alerts[0].strip(), alerts
        assert len(alerts[0]) < 300 and f"showing '{STARTS_ON}'" in alerts[0], alerts
        assert page.locator("img[src='x']").count() == 0  # the name is text, not HTML
    _step(page, 1)  # the starting scenario runs

    # what the server offers still loads: the file from --scenario-dir, then a shipped name
    for value, shown in ((str(d / "mine.toml"), "mine · seed"), ("baseline", "baseline · seed")):
        _pick(page, value)
        page.get_by_text(shown).first.wait_for(timeout=WAIT_MS)
        assert _alerts(page) == [] and "Traceback" not in page.inner_text("body")
    _step(page, 1)
    context.close()


def test_hostile_control_values_are_one_line_notices(guarded_server, browser):
    """Sliders sent a string, a list or a huge number, the seed a Unicode digit:
    Solara's own sliders raised on 'abc' and the page became a traceback; now a value that is
    not a number is ignored, a number is clamped to the slider, and the seed falls back with
    one line."""
    url, _d = guarded_server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = _open(context, url, [])
    page.evaluate("""() => {
        const roots = new Set([...document.querySelectorAll('*')].map(e => e.__vue__)
            .filter(Boolean).map(vm => vm.$root));
        const all = [];
        const walk = vm => { all.push(vm); vm.$children.forEach(walk); };
        roots.forEach(walk);
        const set = (label, value) => all.filter(vm => typeof vm.label === 'string'
                                                 && vm.label.startsWith(label))
            .forEach(vm => { vm.$emit('change', value); vm.$emit('input', value); });
        set('Loan-to-value', 'abc');
        set('Correlation shift', [1]);
        set('Rent deflation', 0.6);
        set('Buyer capacity', 1e300);
    }""")
    page.get_by_text(re.compile(r"rent deflation 60%/yr")).wait_for(timeout=WAIT_MS)
    page.get_by_text(re.compile(r"buyer capacity x5")).wait_for(timeout=WAIT_MS)  # clamped
    page.wait_for_timeout(1000)  # every slider's change has been answered
    seed = page.get_by_label("Seed (blank = scenario's)")
    seed.fill("\u00b2")  # isdigit() but not int(): the seed is sent on Enter
    seed.press("Enter")
    page.wait_for_function("() => [...document.querySelectorAll('.v-alert')].some(e => "
                           "e.innerText.includes('is not an integer'))", timeout=WAIT_MS)
    body = page.inner_text("body")
    assert "Traceback" not in body and "\u00b2' is not an integer" in body
    alerts = _alerts(page)
    assert len(alerts) == 1 and "\n" not in alerts[0].strip(), alerts
    _step(page, 1)
    assert "Traceback" not in page.inner_text("body")
    context.close()
