"""Report screens: positions and P&L per customer, the trades search with its CSV export, and the
reconciliation breaks operations work. Reads only, except the break workflow, which goes through
`reporting.reconciliation`."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Generator
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from broker.exceptions import ApplicationError
from broker.models import Customer
from broker.screens import StaffRequest as HttpRequest
from broker.screens import screen
from orders import roles
from orders import selectors as order_selectors
from orders.api.serializers import TRADE_ROW_LOOKUPS, TradeOutputSerializer, trade_row
from orders.forms import customer_choices
from orders.models import Trade
from reporting import reconciliation
from reporting.forms import BreakCommentForm, BreakResolveForm, TradeSearchForm
from reporting.models import Break, BreakStatus, ReconciliationRun

TRADES_PER_PAGE = 50
CSV_COLUMNS = list(TradeOutputSerializer.Meta.fields)


# --- positions and P&L --------------------------------------------------------------------------------


@screen(roles.VIEW_BLOTTER)
@require_GET
def positions(request: HttpRequest) -> HttpResponse:
    customer_id = request.GET.get("customer", "").strip()
    customer = Customer.objects.filter(customer_id=customer_id).first() if customer_id else None
    context: dict[str, Any] = {"customers": customer_choices()[1:], "customer": customer, "customer_id": customer_id}
    if customer is not None:
        holdings = order_selectors.customer_holdings(customer=customer)
        context.update(
            summary=order_selectors.customer_summary(customer=customer),
            holdings=holdings,
            totals={
                "market_value": sum((row.market_value or 0 for row in holdings), start=0),
                "unrealized": sum((row.unrealized_pnl or 0 for row in holdings), start=0),
                "realized": sum((row.realized_pnl for row in holdings), start=0),
            },
        )
    template = "reporting/_positions.html" if request.htmx else "reporting/positions.html"
    return render(request, template, context)


# --- trades -------------------------------------------------------------------------------------------


def _trade_filters(form: TradeSearchForm) -> dict[str, Any]:
    data = form.cleaned_data if form.is_valid() else {}
    return {
        "customer_id": data.get("customer") or "",
        "ticker": (data.get("ticker") or "").upper(),
        "order_id": str(data["order_id"]) if data.get("order_id") else "",
        "exchange": data.get("exchange") or "",
        "date_from": data.get("date_from"),
        "date_to": data.get("date_to"),
    }


@screen(roles.VIEW_BLOTTER)
@require_GET
def trades(request: HttpRequest) -> HttpResponse:
    form = TradeSearchForm(request.GET or None)
    filters = _trade_filters(form) if request.GET else _trade_filters(TradeSearchForm({}))
    paginator = Paginator(order_selectors.trades_search(**filters), TRADES_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode(), "count": paginator.count}
    template = "reporting/_trades_table.html" if request.htmx else "reporting/trades.html"
    return render(request, template, context)


# Rows per chunk of the CSV export: one chunk of trades (model instances and their CSV text) is in
# memory at a time, fetched by one server-side cursor.
CSV_CHUNK_ROWS = 500


def _csv_chunks(queryset: QuerySet[Trade]) -> Generator[str, None, None]:
    """The export's CSV text, `CSV_CHUNK_ROWS` trades at a time, in the API's trade shape."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    rows = cast(
        Generator[tuple[Any, ...], None, None],
        queryset.values_list(*TRADE_ROW_LOOKUPS).iterator(chunk_size=CSV_CHUNK_ROWS),
    )
    try:
        for count, values in enumerate(rows, start=1):
            writer.writerow(["" if value is None else value for value in trade_row(values)])
            if count % CSV_CHUNK_ROWS == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue()
    finally:
        rows.close()  # the server-side cursor, also when the client went away mid-file


async def _csv_chunks_async(chunks: Generator[str, None, None]) -> AsyncIterator[str]:
    """The same chunks for an ASGI server, which would otherwise read a synchronous iterator whole
    into a list before sending a byte. Each chunk is made by a thread-sensitive `sync_to_async`, so
    on the request's own thread and database connection, where the server-side cursor lives."""

    def next_chunk() -> str | None:
        return next(chunks, None)

    try:
        while (chunk := await sync_to_async(next_chunk)()) is not None:
            yield chunk
    finally:
        await sync_to_async(chunks.close)()


@screen(roles.VIEW_BLOTTER)
@require_GET
def trades_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form = TradeSearchForm(request.GET)
    if request.GET and not form.is_valid():
        return redirect(f"/trades/?{request.GET.urlencode()}")
    chunks = _csv_chunks(order_selectors.trades_search(**_trade_filters(form)))
    # Each server streams the iterator kind it can stream: an async one under ASGI (uvicorn), a
    # synchronous one under WSGI (runserver, the test client).
    content = _csv_chunks_async(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="trades-{timezone.now().date().isoformat()}.csv"'
    return response


# --- reconciliation breaks ----------------------------------------------------------------------------


@screen(roles.WORK_BREAKS)
@require_GET
def breaks(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "open")
    items = Break.objects.select_related("run", "assignee").order_by("-run_id", "id")
    if status == "open":
        items = items.exclude(status=BreakStatus.RESOLVED)
    elif status in BreakStatus.values:
        items = items.filter(status=status)
    context = {
        "breaks": items[:200],
        "status": status,
        "statuses": BreakStatus.values,
        "last_run": ReconciliationRun.objects.order_by("-id").first(),
    }
    return render(request, "reporting/breaks.html", context)


@screen(roles.RUN_RECONCILIATION)
@require_POST
def reconciliation_run_now(request: HttpRequest) -> HttpResponse:
    reconciliation.reconciliation_run(triggered_by=f"screen:{request.user.get_username()}")
    return redirect("reporting:breaks")


@screen(roles.WORK_BREAKS)
@require_http_methods(["GET", "POST"])
def break_detail(request: HttpRequest, break_id: int) -> HttpResponse:
    item = Break.objects.select_related("run", "assignee", "resolved_by").filter(pk=break_id).first()
    if item is None:
        raise Http404("No such break.")
    comment_form, resolve_form = BreakCommentForm(), BreakResolveForm()
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "assign":
                reconciliation.break_assign(break_id=item.pk, assignee=request.user, actor=request.user)
            elif action == "comment":
                comment_form = BreakCommentForm(request.POST)
                if not comment_form.is_valid():  # already next to the field
                    raise ApplicationError("Check the comment.", errors={})
                reconciliation.break_comment(
                    break_id=item.pk, text=comment_form.cleaned_data["text"], actor=request.user
                )
            elif action == "resolve":
                resolve_form = BreakResolveForm(request.POST)
                if not resolve_form.is_valid():  # already next to the field
                    raise ApplicationError("Check the resolution.", errors={})
                reconciliation.break_resolve(
                    break_id=item.pk, resolution=resolve_form.cleaned_data["resolution"], actor=request.user
                )
        except ApplicationError as error:
            target = resolve_form if action == "resolve" else comment_form
            field = next(iter(error.errors), None)
            if not target.errors:
                target.add_error(field if field in target.fields else None, error.message)
        else:
            return redirect("reporting:break", break_id=item.pk)
    context = {
        "item": item,
        "history": item.comments.select_related("author").order_by("id"),
        "comment_form": comment_form,
        "resolve_form": resolve_form,
    }
    return render(request, "reporting/break_detail.html", context)
