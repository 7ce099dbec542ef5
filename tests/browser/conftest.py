"""Browser tests: Playwright drives Debian's Chromium (/usr/bin/chromium, never a downloaded browser)
against the session's real stack (gunicorn/uvicorn web tier + Celery worker, tests/stack.py).

Each test saves screenshots of its screens under `<BROKER_VAR_DIR>/screens/`; docs/screens/ holds
copies of current ones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from orders import roles
from pools import services as pool_services
from tests.conftest import give_shares, make_customers, make_pools, make_ticker
from tests.stack import Stack
from tests.staff import PASSWORD, staff_user

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENS = Path(settings.VAR_DIR) / "screens"
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test module. Not for the session: Playwright's sync API keeps an asyncio loop
    running in this thread while it is open, and later tests (tests/integration) call asyncio.run()."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does it)")
    # With that loop running, Django's ORM would refuse to run ("async context"); the tests' own code is
    # plain synchronous code, so the guard does not apply while the browser is open.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = browser.new_context(base_url=stack.base_url, viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def desk(stack: Stack) -> None:
    """Venues, the demo customers, COIN with liquidity, and one staff user per role."""
    make_pools()
    make_customers()
    ticker = make_ticker("COIN", "256.62")
    pool_services.books_ensure(ticker_id=ticker.pk)
    give_shares("COIN")
    staff_user("trader", roles.TRADER)
    staff_user("ops", roles.OPERATIONS)


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=full_page)


def menu(page: Page, name: str) -> Locator:
    """A link of the top menu."""
    return page.locator("nav.nav").get_by_role("link", name=name, exact=True)


def log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/orders/blotter/$"))
