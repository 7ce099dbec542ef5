"""Reconciliation in the admin: runs (read-only, with a "Run reconciliation now" button) and breaks,
which staff assign, comment on and resolve through `reporting.reconciliation`'s services. The nightly
aggregation's rows: read-only, with an action that recomputes the selected days."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from broker.admin_base import AppendOnlyAdmin, RecordAdmin, ServiceFormAdmin, customer_column, ticker_column
from broker.exceptions import ApplicationError
from broker.text import TextFormField
from reporting import aggregation, reconciliation
from reporting.models import (
    Break,
    BreakComment,
    BreakStatus,
    CustomerDay,
    PositionSnapshot,
    ReconciliationRun,
    TickerDay,
)
from reporting.reconciliation import COMMENT_TEXT, RESOLUTION_TEXT

RUN_PERMISSION = "reporting.run_reconciliation"
RUN_FIELDS = ("id", "started_at", "finished_at", "triggered_by", "status", "checks_run", "breaks_found", "summary")


def run_message(run: ReconciliationRun) -> str:
    """What staff are told after a run: "Clean: 0 breaks" or "N breaks" and their kinds."""
    if not run.breaks_found:
        return f"Clean: 0 breaks (reconciliation #{run.pk}: {run.summary})."
    plural = "" if run.breaks_found == 1 else "s"
    return f"{run.breaks_found} break{plural} (reconciliation #{run.pk}: {run.summary})."


class BreakInline(admin.TabularInline):
    model = Break
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("kind", "status", "assignee", "expected", "actual")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(AppendOnlyAdmin):
    list_display = RUN_FIELDS
    list_filter = ["status", "triggered_by"]
    date_hierarchy = "started_at"
    readonly_fields = RUN_FIELDS
    inlines = [BreakInline]
    change_list_template = "admin/reporting/reconciliationrun/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        run_now = path("run/", self.admin_site.admin_view(self.run_view), name="reporting_reconciliationrun_run")
        return [run_now, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {**(extra_context or {}), "can_run_reconciliation": request.user.has_perm(RUN_PERMISSION)}
        return super().changelist_view(request, extra_context=context)

    def run_view(self, request: HttpRequest) -> HttpResponse:
        """POST from the changelist button: run every check now, then show the run."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(RUN_PERMISSION):
            raise PermissionDenied
        run = reconciliation.reconciliation_run(triggered_by=f"admin:{request.user.get_username()}")
        self.message_user(request, run_message(run), messages.SUCCESS if not run.breaks_found else messages.WARNING)
        return HttpResponseRedirect(reverse("admin:reporting_reconciliationrun_change", args=[run.pk]))


class BreakCommentInline(admin.TabularInline):
    model = BreakComment
    extra = 0
    can_delete = False
    fields = ("created_at", "author", "from_status", "to_status", "text")
    readonly_fields = fields
    verbose_name = "history entry"
    verbose_name_plural = "history (comments and status changes)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class BreakForm(forms.ModelForm):
    """Assignee, a new comment and a resolution; saving hands each to its service."""

    comment = TextFormField(
        text=COMMENT_TEXT, widget=forms.Textarea(attrs={"rows": 3}), required=False, help_text="Added to the history."
    )
    resolution = TextFormField(
        text=RESOLUTION_TEXT,
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Filling this in resolves the break.",
    )

    class Meta:
        model = Break
        fields = ["assignee", "resolution"]
        help_texts = {"resolution": "Filling this in resolves the break."}

    def clean_assignee(self) -> Any:
        assignee = self.cleaned_data.get("assignee")
        if assignee is None and self.instance.assignee_id is not None:
            raise forms.ValidationError("A break cannot be unassigned; assign it to someone else.")
        return assignee


@admin.register(Break)
class BreakAdmin(ServiceFormAdmin):
    form = BreakForm
    list_display = ["id", "run", "kind", "status", "assignee", "records_short", "expected", "actual", "created_at"]
    list_filter = ["kind", "status", "run", "assignee"]
    search_fields = ["expected", "actual", "resolution"]
    list_select_related = ["run", "assignee"]
    inlines = [BreakCommentInline]
    actions = ["assign_to_me"]
    fieldsets = [
        (None, {"fields": ["run", "kind", "records_text", "expected", "actual", "status", "created_at"]}),
        ("Work on it", {"fields": ["assignee", "comment", "resolution", "resolved_at", "resolved_by"]}),
    ]

    @admin.display(description="records")
    def records_short(self, item: Break) -> str:
        return ", ".join(f"{key} {value}" for key, value in item.records.items() if not isinstance(value, list | dict))

    @admin.display(description="records")
    def records_text(self, item: Break) -> str:
        return format_html("<pre>{}</pre>", json.dumps(item.records, indent=2))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fixed = ["run", "kind", "records_text", "expected", "actual", "status", "created_at", "resolved_at"]
        if obj is not None and obj.status == BreakStatus.RESOLVED:
            return [*fixed, "assignee", "resolution", "resolved_by"]
        return [*fixed, "resolved_by"]

    def save_model(self, request: HttpRequest, obj: Break, form: forms.ModelForm, change: bool) -> None:
        # Nothing is saved from the form directly: each change is a service call that writes its history.
        actor = request.user if request.user.is_authenticated else None
        data = form.cleaned_data
        try:
            if "assignee" in form.changed_data and data.get("assignee") is not None:
                reconciliation.break_assign(break_id=obj.pk, assignee=data["assignee"], actor=actor)
            if (data.get("comment") or "").strip():
                reconciliation.break_comment(break_id=obj.pk, text=data["comment"], actor=actor)
            if "resolution" in form.changed_data and (data.get("resolution") or "").strip():
                reconciliation.break_resolve(break_id=obj.pk, resolution=data["resolution"], actor=actor)
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
        obj.refresh_from_db()

    @admin.action(description="Assign selected breaks to me")
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[Break]) -> None:
        if not request.user.is_authenticated:
            raise PermissionDenied
        open_ids = list(queryset.exclude(status=BreakStatus.RESOLVED).values_list("pk", flat=True))
        for break_id in open_ids:
            reconciliation.break_assign(break_id=break_id, assignee=request.user, actor=request.user)
        self.message_user(request, f"{len(open_ids)} breaks assigned to {request.user.get_username()}.")


# --- the nightly aggregation's rows ------------------------------------------------------------------


class ReportDayAdmin(RecordAdmin):
    """Rows only the aggregation writes; the action recomputes their days with it."""

    date_hierarchy = "date"
    list_filter = ["provisional", "date"]
    actions = ["rerun_aggregation"]

    def has_run_reconciliation_permission(self, request: HttpRequest) -> bool:
        # The reconciliation run's permission: the same staff re-check the books and re-run their reports.
        return request.user.has_perm(RUN_PERMISSION)

    @admin.action(description="Re-run aggregation for this day", permissions=["run_reconciliation"])
    def rerun_aggregation(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        days = sorted(set(queryset.values_list("date", flat=True)))
        # Each day carries its totals into the stored days after it, so recomputing from the earliest
        # selected day covers every selected day and every day after, each once.
        count = aggregation.days_after_correction(days[0])
        selected = ", ".join(str(day) for day in days)
        plural = "" if count == 1 else "s"
        self.message_user(request, f"Re-aggregated {count} day{plural} from {days[0]} (selected: {selected}).")


@admin.register(CustomerDay)
class CustomerDayAdmin(ReportDayAdmin):
    list_display = [
        "date",
        customer_column,
        "provisional",
        "nr_trades",
        "buy_notional",
        "sell_notional",
        "commission_paid",
        "remaining_fund",
        "market_value",
        "total_pnl",
        "updated",
    ]
    list_select_related = ["customer"]
    search_fields = ["customer__customer_id"]


@admin.register(TickerDay)
class TickerDayAdmin(ReportDayAdmin):
    list_display = [
        "date",
        ticker_column,
        "provisional",
        "nr_trades",
        "volume",
        "notional",
        "vwap",
        "open",
        "high",
        "low",
        "last",
        "fees",
        "close",
        "close_date",
    ]
    list_select_related = ["ticker"]
    search_fields = ["ticker__symbol"]


@admin.register(PositionSnapshot)
class PositionSnapshotAdmin(RecordAdmin):
    date_hierarchy = "date"
    list_display = [
        "date",
        customer_column,
        ticker_column,
        "provisional",
        "quantity",
        "average_cost",
        "close",
        "close_date",
        "market_value",
        "trade_pnl",
        "position_pnl",
        "total_pnl",
    ]
    list_filter = ["provisional", "date"]
    list_select_related = ["customer", "ticker"]
    search_fields = ["customer__customer_id", "ticker__symbol"]
