"""Staff screens of the order desk: ticket, blotter, bulk booking, kill switch and trade corrections.

Each view checks its permission (`broker.screens.screen`), calls the same validation and services as
the REST API, and renders a template; htmx requests get the fragment they asked for. A refused input
comes back as the form with a message next to the field, never an error page.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from broker.exceptions import ApplicationError
from broker.screens import StaffRequest as HttpRequest
from broker.screens import add_service_errors, screen
from broker.uploads import upload_refusal
from orders import bulk, kill_switch, roles, selectors, services
from orders.forms import (
    TICKET_FIELDS,
    BulkGenerateForm,
    BulkUploadForm,
    HaltForm,
    OrderTicketForm,
    TradeCorrectionForm,
    customer_choices,
)
from orders.models import BulkBatch, BulkStatus, HaltScope, OrderStatus
from orders.validation import order_entry_resolve, parse_price

# --- order ticket -------------------------------------------------------------------------------------


@screen(roles.ENTER_ORDER)
@require_http_methods(["GET", "POST"])
def ticket(request: HttpRequest) -> HttpResponse:
    placed = None
    if request.method == "POST":
        form = OrderTicketForm(request.POST)
        form.is_valid()  # the fields are free text; the order is checked below exactly as the API checks it
        try:
            entry = order_entry_resolve(data=form.api_body(), user=request.user)
            placed = services.order_place(
                request=entry.request, customer=entry.customer, ticker=entry.ticker, actor=request.user
            ).order
        except ApplicationError as error:
            add_service_errors(form, error, TICKET_FIELDS)
        else:
            # A fresh ticket for the next order, keeping the customer and ticker at hand.
            form = OrderTicketForm(
                initial={
                    "customer": entry.customer.customer_id,
                    "ticker": entry.ticker.symbol,
                    "direction": entry.request.direction,
                    "order_type": entry.request.order_type,
                    "time_in_force": entry.request.time_in_force,
                }
            )
    else:
        form = OrderTicketForm(
            initial={"customer": request.GET.get("customer", ""), "ticker": request.GET.get("ticker", "")},
            focus=True,
        )
    symbol = str(form["ticker"].value() or "")
    context = {
        "form": form,
        "placed": placed,
        "quote": selectors.ticker_quote(symbol=symbol) if symbol else None,
        "symbol": symbol.upper(),
        "symbols": selectors.active_symbols(),
    }
    template = "orders/_ticket_form.html" if request.htmx else "orders/ticket.html"
    return render(request, template, context)


@screen(roles.ENTER_ORDER)
@require_GET
def ticket_quote(request: HttpRequest) -> HttpResponse:
    symbol = request.GET.get("ticker", "").strip()
    quote = selectors.ticker_quote(symbol=symbol) if symbol else None
    return render(request, "orders/_quote.html", {"quote": quote, "symbol": symbol.upper()})


# --- blotter ------------------------------------------------------------------------------------------


def _blotter_filters(request: HttpRequest) -> dict[str, str]:
    status = request.GET.get("status", "")
    return {
        "customer_id": request.GET.get("customer", "").strip(),
        "ticker": request.GET.get("ticker", "").strip().upper(),
        "status": status if status in OrderStatus.values else "",
    }


@screen(roles.VIEW_BLOTTER)
@require_GET
def blotter(request: HttpRequest) -> HttpResponse:
    filters = _blotter_filters(request)
    context = {
        "orders": selectors.blotter_orders(
            customer_id=filters["customer_id"], ticker=filters["ticker"], status=filters["status"]
        ),
        "filters": filters,
        "customers": customer_choices()[1:],
        "statuses": OrderStatus.values,
        "symbols": selectors.active_symbols(),
        "limit": selectors.BLOTTER_LIMIT,
        "query": request.GET.urlencode(),
    }
    template = "orders/_blotter_rows.html" if request.htmx else "orders/blotter.html"
    return render(request, template, context)


@screen(roles.VIEW_BLOTTER)
@require_GET
def order_detail(request: HttpRequest, order_id: str) -> HttpResponse:
    order = selectors.order_detail(order_id=order_id)
    if order is None:
        raise Http404("No such order.")
    return render(request, "orders/_order_detail.html", {"order": order})


@screen(roles.CANCEL_ORDER)
@require_POST
def order_cancel(request: HttpRequest, order_id: str) -> HttpResponse:
    order = selectors.order_detail(order_id=order_id)
    if order is None:
        raise Http404("No such order.")
    error = None
    try:
        services.order_cancel(order_id=order.pk, actor=request.user)
    except ApplicationError as refused:
        error = refused.message
    order = selectors.order_detail(order_id=order_id)
    if not request.htmx:
        return redirect("orders:blotter")
    return render(request, "orders/_order_detail.html", {"order": order, "cancel_error": error})


# --- bulk booking -------------------------------------------------------------------------------------


@screen(roles.ENTER_ORDER)
@require_http_methods(["GET", "POST"])
def bulk_upload(request: HttpRequest) -> HttpResponse:
    upload_form = BulkUploadForm()
    generate_form = BulkGenerateForm()
    if request.method == "POST":
        try:
            if "generate" in request.POST:
                generate_form = BulkGenerateForm(request.POST)
                if not generate_form.is_valid():  # already next to the field
                    raise ApplicationError("Check the fields.", errors={})
                count_text = generate_form.cleaned_data["count"]
                if not count_text.isdigit():
                    raise ApplicationError("Enter a whole number of orders, e.g. 50.", field="count")
                rows = bulk.bulk_rows_generate(count=int(count_text))
                source = f"{len(rows)} generated orders"
            else:
                upload_form = BulkUploadForm(request.POST, request.FILES)
                upload_form.is_valid()
                refused = upload_refusal(request).get("file")
                if refused:  # stopped while it arrived: never stored, never read
                    raise bulk.BulkFileError(refused)
                upload = request.FILES.get("file")
                if upload is None:
                    raise bulk.BulkFileError("Choose a CSV file of orders.")
                rows = bulk.parse_upload(upload=upload)
                source = upload.name or "upload.csv"
            batch = bulk.bulk_batch_create(rows=rows, source=source, actor=request.user)
        except ApplicationError as error:
            add_service_errors(generate_form if "generate" in request.POST else upload_form, error, {})
        else:
            return redirect("orders:bulk-batch", batch_id=batch.batch_id)
    recent = BulkBatch.objects.filter(created_by=request.user).only(
        "batch_id", "source", "status", "total", "valid", "booked", "created_at"
    )[:10]
    return render(
        request,
        "orders/bulk_upload.html",
        {
            "upload_form": upload_form,
            "generate_form": generate_form,
            "recent": recent,
            "columns": ", ".join(TICKET_FIELDS),
            "inline_rows": bulk.BULK_INLINE_ROWS,
        },
    )


BATCH_ROWS_SHOWN = 500  # valid rows listed in the preview; rows with errors are always listed


def _batch(request: HttpRequest, batch_id: str) -> BulkBatch:
    batch = BulkBatch.objects.filter(batch_id=batch_id).first()
    if batch is None:
        raise Http404("No such batch.")
    return batch


def _batch_context(batch: BulkBatch) -> dict[str, Any]:
    invalid_rows = [row for row in batch.rows if row["errors"]]
    valid_rows = [row for row in batch.rows if not row["errors"]]
    shown = sorted(invalid_rows + valid_rows[:BATCH_ROWS_SHOWN], key=lambda row: row["line"])
    step_total = batch.valid if batch.status in (BulkStatus.BOOKING, BulkStatus.BOOKED) else batch.total
    return {
        "batch": batch,
        "working": batch.status in (BulkStatus.VALIDATING, BulkStatus.BOOKING),
        "percent": int(100 * batch.processed / step_total) if step_total else 100,
        "step_total": step_total,
        "invalid": batch.total - batch.valid if batch.status != BulkStatus.VALIDATING else 0,
        # A batch that failed while validating (no row counted valid yet) has no preview to show.
        "validated": batch.status != BulkStatus.VALIDATING and (batch.status != BulkStatus.FAILED or batch.valid > 0),
        "columns": list(TICKET_FIELDS),
        "rows": shown,
        "hidden_rows": len(batch.rows) - len(shown),
    }


@screen(roles.ENTER_ORDER)
@require_GET
def bulk_batch(request: HttpRequest, batch_id: str) -> HttpResponse:
    batch = _batch(request, batch_id)
    template = "orders/_bulk_batch.html" if request.htmx else "orders/bulk_batch.html"
    return render(request, template, _batch_context(batch))


@screen(roles.ENTER_ORDER)
@require_POST
def bulk_book(request: HttpRequest, batch_id: str) -> HttpResponse:
    batch = _batch(request, batch_id)
    bulk.bulk_batch_book(batch_id=batch.pk)
    return redirect("orders:bulk-batch", batch_id=batch.batch_id)


# --- operations: kill switch and trade corrections ----------------------------------------------------


@screen(roles.OPERATE_KILL_SWITCH)
@require_http_methods(["GET", "POST"])
def halts(request: HttpRequest) -> HttpResponse:
    form = HaltForm()
    if request.method == "POST":
        form = HaltForm(request.POST)
        release = request.POST.get("release")
        try:
            if not form.is_valid():  # a string the fields refuse (too long, a control character)
                raise ApplicationError("Check the fields.", errors={})
            scope = form.cleaned_data["scope"]
            target = form.cleaned_data["target"] or None
            reason = form.cleaned_data["reason"]
            target_id = kill_switch.halt_target_id(scope=scope, target=target)
            kill_switch.halt_set(
                scope=scope, target_id=target_id, active=not release, reason=reason, actor=request.user
            )
        except ApplicationError as error:
            if form.errors:
                pass  # already next to their fields
            elif release:
                form = HaltForm()
                form.add_error(None, error.message)
            else:
                add_service_errors(form, error, {})
        else:
            return redirect("orders:halts")
    return render(
        request,
        "orders/halts.html",
        {"form": form, "halts": kill_switch.halts(), "scopes": HaltScope.values},
    )


@screen(roles.CORRECT_TRADE)
@require_http_methods(["GET", "POST"])
def trade_correct(request: HttpRequest, trade_id: str) -> HttpResponse:
    trade = selectors.trades_search(include_busted=True).filter(trade_id=trade_id).first()
    if trade is None:
        raise Http404("No such trade.")
    form = TradeCorrectionForm(initial={"action": "amend"})
    done = False
    if request.method == "POST":
        form = TradeCorrectionForm(request.POST)
        valid = form.is_valid()  # a string the fields refuse (too long, a control character) stops here
        data = form.cleaned_data
        bust = request.POST.get("action") == "bust"
        errors: dict[str, list[str]] = {}
        reason = data.get("reason", "")
        if not reason and "reason" not in form.errors:
            errors["reason"] = ["Say why the trade is corrected."]
        price = quantity = None
        if not bust:
            price_text = data.get("price", "")
            quantity_text = data.get("quantity", "")
            if price_text:
                price, price_error = parse_price(price_text)
                if price_error:
                    errors["price"] = [price_error]
            if quantity_text:
                if quantity_text.isdigit():
                    quantity = int(quantity_text)
                else:
                    errors["quantity"] = ["Must be a whole number of shares."]
            if not price_text and not quantity_text and "price" not in errors:
                errors["price"] = ["Give a new price, a lower quantity, or both."]
        try:
            if errors or not valid:
                raise ApplicationError("Check the fields.", errors=errors)
            services.trade_correct(
                trade_id=trade.pk, reason=reason, actor=request.user, price=price, quantity=quantity, bust=bust
            )
        except ApplicationError as error:
            add_service_errors(form, error, {})
        else:
            done = True
            trade.refresh_from_db()
            form = TradeCorrectionForm(initial={"action": "amend"})
    versions = trade.versions.all()
    return render(
        request, "orders/trade_correct.html", {"trade": trade, "form": form, "done": done, "versions": versions}
    )
