"""The LIVE badge of the staff screens does not flicker (issue 10, item 1): an idle fill stream stays
live, and a dropped socket that reconnects at once is not shown as a change at all."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.conftest import log_in
from tests.browser.test_screens import api_order
from tests.stack import Stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack, pytest.mark.usefixtures("desk")]

# Records every text the badge shows from now on (a flicker is any change after "live").
WATCH_BADGE = """() => {
  window.__badge = [];
  const badge = document.getElementById("live-status");
  new MutationObserver(() => window.__badge.push(badge.textContent))
    .observe(badge, {childList: true, characterData: true, subtree: true});
}"""


def test_an_idle_blotter_stays_live_and_still_receives_fills(page: Page, stack: Stack) -> None:
    # given a trader's blotter on the live fill stream
    log_in(page, "trader")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate(WATCH_BADGE)

    # when nothing happens for 20 s (four times redis-py's default socket timeout)
    page.wait_for_timeout(20_000)

    # then the badge never changed, and the next fill still arrives on the open page
    assert page.evaluate("window.__badge") == []
    placed = api_order(stack, "000003", direction="Sell", quantity=100, price="250.00")
    expect(page.locator(f"#fill-feed li[data-order-id='{placed['orderId']}']").first).to_be_visible()
    assert page.evaluate("window.__badge") == []


def test_a_socket_dropped_and_reconnected_at_once_is_not_shown(page: Page, stack: Stack) -> None:
    # given the page's fill socket passes through a route the test can cut (server messages recorded)
    sockets: list[tuple[WebSocketRoute, list[str]]] = []

    def through(route: WebSocketRoute) -> None:
        heard: list[str] = []
        server = route.connect_to_server()

        def forward(message: str | bytes) -> None:
            heard.append(str(message))
            route.send(message)

        server.on_message(forward)
        sockets.append((route, heard))

    page.route_web_socket(re.compile(r"/ws/fills/"), through)
    log_in(page, "trader")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate(WATCH_BADGE)

    # when the connection drops (as a restart of the web server would drop it) and the page reconnects
    sockets[-1][0].close(code=1012)
    for _ in range(200):  # a bound for a hung page, not a timing requirement
        if len(sockets) == 2 and any('"subscribed"' in message for message in sockets[1][1]):
            break
        page.wait_for_timeout(100)
    assert len(sockets) == 2
    assert any('"subscribed"' in message for message in sockets[1][1])

    # then the badge showed no change, and fills arrive on the new socket
    placed = api_order(stack, "000003", direction="Sell", quantity=100, price="250.00")
    expect(page.locator(f"#fill-feed li[data-order-id='{placed['orderId']}']").first).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("live")
    assert page.evaluate("window.__badge") == []
