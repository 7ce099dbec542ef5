// The live fill stream for staff screens: one WebSocket to /ws/fills/ (the session cookie logs it in).
// A page opts in with <body data-live="all"> or data-live="<customerId>". On a fill or order message
// the page's htmx fragments that listen for "live-refresh" reload themselves (at most every 300 ms),
// and a fill is added to the #fill-feed list if the page has one.
// Keyboard flow on the order ticket: after a submit, the first field with an error, else the quantity.
// Only after the ticket's own swap: the quote panel's swap bubbles up too, and arrives while the user
// types further down the form (focus moved mid-typing sent the price into the quantity field).
window.deskFocus = function (form) {
  const field = form.querySelector(".has-error input, .has-error select") || form.querySelector("#id_quantity");
  if (field) {
    field.focus();
  }
};

// The blotter keeps the order shown in the detail panel highlighted, also after its rows are refreshed.
document.addEventListener("htmx:afterSettle", function () {
  const detail = document.getElementById("order-detail-body");
  document.querySelectorAll("#blotter-rows tr.selected").forEach(function (row) {
    row.classList.remove("selected");
  });
  if (detail) {
    const row = document.getElementById("order-" + detail.dataset.orderId);
    if (row) {
      row.classList.add("selected");
    }
  }
});

(function () {
  "use strict";
  const scope = document.body.dataset.live;
  const status = document.getElementById("live-status");
  if (!scope) {
    if (status) {
      status.hidden = true;
    }
    return;
  }
  let timer = null;
  let retry = 1000;
  // The badge must not flicker. A healthy idle socket stays "live" (the server never closes it on its
  // own); a drop that is followed by a quick reconnect is not shown at all: the badge turns to
  // "reconnecting" only when the stream has been down for RECONNECT_GRACE ms.
  const RECONNECT_GRACE = 3000;
  // A socket can die without a close event (sleep, a dropped network path): every PING_EVERY ms the
  // page pings (the server answers "pong"), and a socket that heard nothing at all since the previous
  // ping, not even its pong, is closed and reconnected.
  const PING_EVERY = 30000;
  let downTimer = null;
  let everLive = false;

  function show(text, state) {
    if (status && status.textContent !== text) {
      status.textContent = text;
      status.className = "live live-" + state;
    }
  }

  function refreshSoon() {
    if (timer === null) {
      timer = window.setTimeout(function () {
        timer = null;
        htmx.trigger(document.body, "live-refresh");
      }, 300);
    }
  }

  function addFill(trade) {
    const feed = document.getElementById("fill-feed");
    if (!feed) {
      return;
    }
    const empty = feed.querySelector(".empty");
    if (empty) {
      empty.remove();
    }
    const item = document.createElement("li");
    item.className = "fill side-" + trade.direction.toLowerCase();
    item.dataset.orderId = trade.orderId;
    const time = (trade.tradeDate || "").slice(11, 19);
    item.textContent = time + "  " + trade.customerId + "  " + trade.direction + " " + trade.quantity + " " +
      trade.ticker + " @ " + trade.price + "  " + trade.exchange;
    feed.prepend(item);
    while (feed.children.length > 50) {
      feed.lastElementChild.remove();
    }
  }

  // The last eventId this page received: a reconnect asks for what came after it (`?since=`), so the
  // feed shows no gap across a dropped socket.
  let lastEventId = null;

  function connect() {
    const protocol = window.location.protocol === "https:" ? "wss://" : "ws://";
    const since = lastEventId === null ? "" : "?since=" + lastEventId;
    const socket = new WebSocket(protocol + window.location.host + "/ws/fills/" + since);
    let lastHeard = Date.now();
    let pinger = null;
    if (!everLive) {
      show("connecting", "off");
    }
    socket.onmessage = function (event) {
      lastHeard = Date.now();
      const message = JSON.parse(event.data);
      if (typeof message.eventId === "number" && (lastEventId === null || message.eventId > lastEventId)) {
        lastEventId = message.eventId;
      }
      if (message.type === "heartbeat") {
        return;
      }
      if (message.type === "reset") {
        refreshSoon(); // events were pruned before we came back: the fragments reload from the database
        return;
      }
      if (message.type === "subscribed") {
        retry = 1000;
        window.clearTimeout(downTimer);
        downTimer = null;
        show("live", "on");
        if (everLive) {
          refreshSoon(); // fills may have happened while the socket was down: reload the fragments
        }
        everLive = true;
        pinger = window.setInterval(function () {
          if (Date.now() - lastHeard > PING_EVERY * 1.5) {
            socket.close();
          } else if (socket.readyState === WebSocket.OPEN) {
            socket.send(JSON.stringify({ type: "ping" }));
          }
        }, PING_EVERY);
        return;
      }
      const record = message.trade || message.order;
      if (!record || (scope !== "all" && record.customerId !== scope)) {
        return;
      }
      if (message.type === "fill") {
        addFill(message.trade);
      }
      refreshSoon();
    };
    socket.onclose = function () {
      window.clearInterval(pinger);
      if (downTimer === null) {
        downTimer = window.setTimeout(function () {
          show("reconnecting", "off");
        }, RECONNECT_GRACE);
      }
      window.setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }

  connect();
})();
