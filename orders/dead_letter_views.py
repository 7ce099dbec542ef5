"""Operations' dead-letter screens: every task that failed for good, and what to do about each.

A letter can be retried (the same task, arguments and queue), closed as handled with a note, and when
it concerns an order, the order can be cancelled with a reason or routed again. Each action goes
through `broker.deadletters` and lands in the letter's history."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from broker import deadletters
from broker.exceptions import ApplicationError
from broker.models import OPEN_DEAD_LETTER_STATUSES, DeadLetter, DeadLetterStatus
from broker.screens import StaffRequest as HttpRequest
from broker.screens import screen
from orders import roles, services, tasks
from orders.forms import DeadLetterCancelForm, DeadLetterCloseForm
from orders.models import FINAL_ORDER_STATUSES, ChildOrder, Order, OrderStatus

PAGE_SIZE = 100
STATUS_FILTERS = {
    "open": ("Open or retrying", OPEN_DEAD_LETTER_STATUSES),
    "resolved": ("Resolved", (DeadLetterStatus.RESOLVED,)),
    "handled": ("Handled", (DeadLetterStatus.HANDLED,)),
    "all": ("All", tuple(DeadLetterStatus.values)),
}


def _order_of(letter: DeadLetter) -> Order | None:
    """The order a letter concerns: its own (a route task) or its child's parent (a match task)."""
    if not letter.subject_id.isdigit():
        return None
    if letter.subject_kind == "order":
        return Order.objects.select_related("customer", "ticker").filter(pk=int(letter.subject_id)).first()
    if letter.subject_kind == "child":
        child = ChildOrder.objects.select_related("parent__customer", "parent__ticker").filter(
            pk=int(letter.subject_id)
        )
        found = child.first()
        return found.parent if found else None
    return None


def _is_order(letter: DeadLetter) -> bool:
    return letter.subject_kind == "order" and letter.subject_id.isdigit()


@screen(roles.HANDLE_DEAD_LETTERS)
@require_http_methods(["GET"])
def dead_letters(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "open")
    if status not in STATUS_FILTERS:
        status = "open"
    tasks_seen = list(
        DeadLetter.objects.values_list("task_name")
        .annotate(count=Count("id"))
        .order_by("task_name")
        .values_list("task_name", "count")
    )
    # Only a task that has letters filters: anything else (a typo, a NUL byte) shows every task.
    task = request.GET.get("task", "")
    if task not in {name for name, _ in tasks_seen}:
        task = ""
    letters = DeadLetter.objects.filter(status__in=STATUS_FILTERS[status][1])
    if task:
        letters = letters.filter(task_name=task)
    shown = list(letters[:PAGE_SIZE])
    # The orders' public ids, for the letters about an order: one query for the page.
    about_orders = {int(letter.subject_id) for letter in shown if _is_order(letter)}
    public_ids = dict(Order.objects.filter(pk__in=about_orders).values_list("pk", "order_id"))
    rows = [(letter, public_ids.get(int(letter.subject_id)) if _is_order(letter) else None) for letter in shown]
    context: dict[str, Any] = {
        "rows": rows,
        "status": status,
        "statuses": [(key, label) for key, (label, _) in STATUS_FILTERS.items()],
        "task": task,
        "tasks": tasks_seen,
        "page_size": PAGE_SIZE,
    }
    return render(request, "orders/dead_letters.html", context)


@screen(roles.HANDLE_DEAD_LETTERS)
@require_http_methods(["GET", "POST"])
def dead_letter(request: HttpRequest, letter_id: int) -> HttpResponse:
    letter = DeadLetter.objects.filter(pk=letter_id).first()
    if letter is None:
        raise Http404(f"No dead letter {letter_id}.")
    order = _order_of(letter)
    close_form, cancel_form = DeadLetterCloseForm(), DeadLetterCancelForm()
    actor = request.user.get_username()
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "retry":
                deadletters.dead_letter_retry(letter_id=letter.pk, actor=actor)
                messages.success(request, f"{letter.task_name} sent again; the letter resolves when it completes.")
                return redirect("orders:dead-letter", letter_id=letter.pk)
            if action == "close":
                close_form = DeadLetterCloseForm(request.POST)
                if close_form.is_valid():
                    deadletters.dead_letter_close(
                        letter_id=letter.pk, actor=actor, note=close_form.cleaned_data["note"]
                    )
                    messages.success(request, "Closed as handled.")
                    return redirect("orders:dead-letter", letter_id=letter.pk)
            elif action == "cancel" and order is not None:
                cancel_form = DeadLetterCancelForm(request.POST)
                if cancel_form.is_valid():
                    reason = cancel_form.cleaned_data["reason"]
                    services.order_cancel(order_id=order.pk, actor=request.user)
                    deadletters.dead_letter_note(
                        letter_id=letter.pk, action="Order cancelled", actor=actor, note=reason
                    )
                    deadletters.dead_letter_close(
                        letter_id=letter.pk, actor=actor, note=f"Order {order.order_id} cancelled: {reason}"
                    )
                    messages.success(request, f"Order {order.order_id} cancelled and the letter closed.")
                    return redirect("orders:dead-letter", letter_id=letter.pk)
            elif action == "reroute" and order is not None and order.status == OrderStatus.NEW:
                tasks.route_order.apply_async(args=(order.pk,))
                deadletters.dead_letter_note(letter_id=letter.pk, action="Order routed again", actor=actor)
                messages.success(request, f"Order {order.order_id} sent to the router again.")
                return redirect("orders:dead-letter", letter_id=letter.pk)
            elif action not in ("close", "cancel"):
                messages.error(request, "That action is not available for this letter.")
        except ApplicationError as error:
            messages.error(request, error.message)
        letter.refresh_from_db()
    context: dict[str, Any] = {
        "letter": letter,
        "actions": list(letter.actions.all()),
        "order": order,
        "order_open": order is not None and order.status not in FINAL_ORDER_STATUSES,
        "order_new": order is not None and order.status == OrderStatus.NEW,
        "close_form": close_form,
        "cancel_form": cancel_form,
        "is_open": letter.status == DeadLetterStatus.OPEN,
        "is_closed": letter.status in (DeadLetterStatus.HANDLED, DeadLetterStatus.RESOLVED),
    }
    return render(request, "orders/dead_letter.html", context)
