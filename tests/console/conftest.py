"""The operator console in a real browser (issue 15): Debian's Chromium driven by Playwright.

How it runs, and why so:

- One Loa server and one Chromium per test module (module-scoped fixtures, on the module's
  event loop: a module using them sets ``pytestmark = pytest.mark.asyncio(loop_scope="module")``);
  each test opens its own browser contexts (cookies, storage, viewport) with ``browse``.
- Playwright's *async* API runs on the test's own event loop, beside the server: each of its
  steps is one protocol message, so the loop watchdog (20 ms, ``tests/loop_watchdog.py``)
  watches it as it watches the server. Its sync API cannot be used, in this thread or in a
  worker thread: it runs the caller's code between two of its calls from inside one step of its
  own event loop (a greenlet switched to from a callback), which the watchdog reports, rightly,
  as that loop held for as long as the caller's code ran.
- The server is ``make_server``'s (loopback, free ports, a fresh data folder, the admin token
  ``ADMIN_TOKEN``), started in this process with the demo programme on, and with three people
  (``PEOPLE``): the first admin (``admin``, its password configured as LOA_ADMIN_PASSWORD
  would), and, made through the API with the admin token, an operator of the commune
  ``an-binh`` and an alert official of the district.
- Screenshots go to ``test-artifacts/console/`` in the repository (``LOA_TEST_ARTIFACTS``
  names another folder than ``test-artifacts``), emptied when the run starts to use it; the run
  prints the folder at its end.
- A page is ready when the shell has drawn it and no request of it is in flight (the live
  stream aside) over two animation frames (``Tab.settled``). Every wait is Playwright's or an
  event's, with a bounded timeout; nothing sleeps.
- Without Debian's Chromium (``/usr/bin/chromium``; ``./run test`` installs it) or Playwright
  (the ``test`` extra) the console tests are skipped, saying so; under CI (``CI`` set) they fail
  instead, since CI must run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from loa.app import LoaServer
from loa.config import Config, MqttConfig
from tests.conftest import ADMIN_TOKEN, LOOPBACK_FETCHES, SOURCE_PASSWORD
from tests.server.test_api import call

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Request,
        async_playwright,
    )
    from playwright.async_api import expect as expect  # for the test modules
except ImportError:  # the test extra is not installed: ``station`` says so
    async_playwright = expect = None  # type: ignore[assignment]

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (never a browser Playwright downloads)
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LOA_TEST_ARTIFACTS") or REPO / "test-artifacts") / "console"
TIMEOUT_MS = 15_000  # any one wait in the browser; generous for a busy 2-core machine
LAUNCH_TIMEOUT_MS = 60_000
PASSWORD = "mat-khau-thu-nghiem"  # every test person's
# the one answer of 400 and above the console expects: its probe of a session at load time
# (401: nobody is signed in yet), which Chromium logs as a failed resource
EXPECTED_FAILURES = {"/api/v1/session": 401}
# requests that stay open by design: the live stream, and a zone played in the browser
LONG_LIVED = {"eventsource", "media", "websocket"}
UNFORMATTED = re.compile(r"\b(?:undefined|null|NaN)\b|\[object \w+\]")

_saved: list[Path] = []  # screenshots of this run, for the summary


@dataclass(frozen=True)
class Person:
    """A user of the test station: ``username``/``password`` sign in through the form;
    ``roles`` and ``scope`` (a zone id) as the API takes them; ``unseen``: texts (names and
    ids of zones outside the scope) no page may show them."""

    username: str
    roles: tuple[str, ...]
    scope: str
    password: str = PASSWORD
    unseen: tuple[str, ...] = ()


# the first admin, whom the server makes at its first start with the configured password
# (``admin_password``, LOA_ADMIN_PASSWORD); the others are made through the API
ADMIN = Person("admin", ("admin",), "huyen")
# of the commune An Bình: the other commune, Phú Mỹ, and its villages are none of theirs
OPERATOR = Person("vanhanh-anbinh", ("operator",), "an-binh", unseen=("Phú Mỹ", "phu-my"))
OFFICIAL = Person("canhbao", ("alert",), "huyen")
PEOPLE = (ADMIN, OPERATOR, OFFICIAL)


@dataclass
class Station:
    """What the console tests run against: the server (``url`` its base, no slash at the end),
    the browser, and the folder screenshots go to."""

    server: LoaServer
    url: str
    browser: Browser
    artifacts: Path


def _unavailable(reason: str) -> None:
    """Skip the console tests for ``reason``, or fail under CI, which must run them."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the console tests)", pytrace=False)
    pytest.skip(reason)


async def start_server(data_dir: Path) -> LoaServer:
    """A server as ``make_server`` starts one (loopback, free ports, ``ADMIN_TOKEN``), with the
    demo programme on the district, and the test people (``PEOPLE``) there."""
    cfg = replace(Config(), listen_host="127.0.0.1", listen_port=0, data_dir=data_dir,
                  demo=True, admin_token=ADMIN_TOKEN, admin_password=ADMIN.password,
                  source_password=SOURCE_PASSWORD,
                  mqtt=MqttConfig(listen_port=0), fetch_policy=LOOPBACK_FETCHES)
    server = await asyncio.to_thread(LoaServer, cfg)  # opens its database: beside the loop
    await server.start()
    try:
        for person in PEOPLE[1:]:
            status, body = await call(server, "POST", "/api/v1/users", json={
                "username": person.username, "password": person.password,
                "role": list(person.roles), "scope": person.scope})
            assert status == 201, body
    except BaseException:
        await server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The folder of this run's screenshots, emptied of an earlier run's when first asked
    for (outside any event loop)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


@contextlib.asynccontextmanager
async def open_station(data_dir: Path, artifacts: Path, browser_args: Sequence[str] = ()
                       ) -> AsyncIterator[Station]:
    """A started server (``start_server``) and Chromium (launched with ``browser_args`` as
    well as the harness's own), stopped at the end. Skips (or fails under CI) without
    Playwright or Debian's Chromium."""
    if async_playwright is None:
        _unavailable("Playwright for Python is not installed (the test extra: ./run test)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"Debian's chromium is not installed at {CHROMIUM} (./run test does)")
    server = await start_server(data_dir)
    try:
        async with async_playwright() as pw:
            # as root Chromium has no sandbox of its own; /dev/shm may be small in a container
            args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM),
                                               args=[*args, *browser_args],
                                               timeout=LAUNCH_TIMEOUT_MS)
            try:
                yield Station(server, f"http://127.0.0.1:{server.port}", browser, artifacts)
            finally:
                await browser.close()
    finally:
        await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def station(tmp_path_factory: pytest.TempPathFactory, artifacts: Path
                  ) -> AsyncIterator[Station]:
    """The server and Chromium of a test module (one each; stopped at its end). A module
    that needs Chromium launched otherwise defines its own ``station`` with
    ``open_station``."""
    async with open_station(tmp_path_factory.mktemp("console") / "data", artifacts) as found:
        yield found


@dataclass
class Tab:
    """One browser context (its own cookies and storage) and its page, with every JavaScript
    error it showed: uncaught exceptions, console errors, failed answers (400 and above) other
    than ``EXPECTED_FAILURES``, a page the shell failed to draw, error toasts. ``errors`` are
    lines of text, oldest first."""

    station: Station
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    _inflight: set[Request] = field(default_factory=set)
    _quiet: asyncio.Event = field(default_factory=asyncio.Event)
    _toasts: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.on("console", self._console)
        self.page.on("request", self._started)
        self.page.on("requestfinished", self._ended)
        self.page.on("requestfailed", self._failed)
        self.page.on("response", self._answered)
        self._quiet.set()

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        url = msg.location.get("url", "") if msg.location else ""
        if msg.text.startswith("Failed to load resource"):
            return  # a failed answer: judged in _answered, where its URL and status are known
        self.errors.append(f"console: {msg.text} ({url})")

    def _answered(self, response: Any) -> None:
        path = urlsplit(response.url).path
        if response.status >= 400 and EXPECTED_FAILURES.get(path) != response.status:
            self.errors.append(f"answer {response.status}: {response.request.method} {path}")

    def _started(self, request: Request) -> None:
        if request.resource_type not in LONG_LIVED:
            self._inflight.add(request)
            self._quiet.clear()

    def _ended(self, request: Request) -> None:
        self._inflight.discard(request)
        if not self._inflight:
            self._quiet.set()

    def _failed(self, request: Request) -> None:
        self._ended(request)
        failure = request.failure or ""
        if "ERR_ABORTED" not in failure:  # not a request the page or a navigation gave up
            self.errors.append(f"request failed ({failure}): {request.method} "
                               f"{urlsplit(request.url).path}")

    async def settled(self, timeout_ms: float = TIMEOUT_MS) -> None:
        """Wait until no request is in flight (the live stream aside) over two animation
        frames: the page has drawn what it fetched. AssertionError naming the requests still
        open after ``timeout_ms``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            if not self._inflight:
                await self.page.evaluate(
                    "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                if not self._inflight:
                    return
            try:
                await asyncio.wait_for(self._quiet.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise AssertionError("requests still open: " + ", ".join(
                    urlsplit(r.url).path for r in self._inflight)) from None

    async def sign_in(self, person: Person, *, load: bool = True) -> None:
        """Open ``/`` (unless ``load`` is False: the sign-in form is shown already) and sign
        in as ``person`` through the form; returns once the shell shows its first page."""
        if load:
            await self.page.goto(self.station.url + "/")
        form = self.page.locator("form#login")
        await form.locator("input[name=username]").fill(person.username)
        await form.locator("input[name=password]").fill(person.password)
        await form.locator("button[type=submit]").click()
        await self.shown()
        await expect(form, "the sign-in form is still shown").to_be_hidden()

    async def shown(self, page_id: str | None = None) -> None:
        """Wait until the shell shows page ``page_id`` (any page when None), with its title,
        and the page has settled; record a page the shell failed to draw, and error toasts."""
        container = self.page.locator("#page")
        await expect(container).to_be_visible()
        if page_id is not None:
            await expect(container).to_have_attribute("data-page", page_id)
        await expect(container.locator("h1").first).to_be_visible()
        await self.settled()
        shown = await container.get_attribute("data-page")
        # the shell draws a page module that failed to load or render as a role=alert line
        for text in await container.locator(":scope > p.error[role=alert]").all_inner_texts():
            self.errors.append(f"page {shown} failed: {text}")
        for text in await self.page.locator("#toasts .toast.error").all_inner_texts():
            if text not in self._toasts:  # a toast stays a few seconds: told once
                self._toasts.add(text)
                self.errors.append(f"error toast on {shown}: {text}")
        # a value the page failed to format, shown as JavaScript spells it
        for found in sorted(set(UNFORMATTED.findall(await container.inner_text()))):
            self.errors.append(f"page {shown} shows {found!r}")

    async def open(self, page_id: str) -> None:
        """Go to page ``page_id`` by its link in the navigation, and wait until it is shown."""
        await self.page.locator(f'#nav a[data-page="{page_id}"]').click()
        await self.shown(page_id)

    async def nav(self) -> dict[str, str]:
        """The navigation's links: {page id: its visible name}, in order."""
        links = self.page.locator("#nav a")
        ids = [await a.get_attribute("data-page") or "" for a in await links.all()]
        return dict(zip(ids, [t.strip() for t in await links.all_inner_texts()], strict=True))

    async def screenshot(self, name: str) -> Path:
        """The whole page (beyond the viewport's height) as ``<artifacts>/<name>.png``."""
        path = self.station.artifacts / f"{name}.png"
        await self.page.screenshot(path=path, full_page=True, animations="disabled",
                                   caret="hide")
        _saved.append(path)
        return path


@pytest_asyncio.fixture(loop_scope="module")
async def browse(station: Station) -> AsyncIterator[Callable[..., Awaitable[Tab]]]:
    """``await browse(width=1280, height=800)``: a new Tab (a fresh context: nobody signed
    in, Vietnamese). Its contexts are closed after the test; any error a tab saw that the
    test did not take (``tab.errors.clear()``) fails the test then."""
    tabs: list[Tab] = []

    async def factory(width: int = 1280, height: int = 800) -> Tab:
        context = await station.browser.new_context(
            viewport={"width": width, "height": height}, locale="vi-VN",
            timezone_id="Asia/Ho_Chi_Minh")
        context.set_default_timeout(TIMEOUT_MS)
        tab = Tab(station, context, await context.new_page())
        tabs.append(tab)
        return tab

    expect.set_options(timeout=TIMEOUT_MS)
    yield factory
    left = [f"  {e}" for tab in tabs for e in tab.errors]
    for tab in tabs:
        await tab.context.close()
    if left:
        pytest.fail("the console showed errors:\n" + "\n".join(left), pytrace=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _saved:
        terminalreporter.write_line(
            f"console screenshots: {len(_saved)} in {_saved[0].parent}")
