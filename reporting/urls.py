"""Report screens (positions, trades and their CSV) and the reconciliation breaks screen."""

from django.urls import path

from reporting import views

app_name = "reporting"

urlpatterns = [
    path("positions/", views.positions, name="positions"),
    path("trades/", views.trades, name="trades"),
    path("trades/export.csv", views.trades_csv, name="trades-csv"),
    path("operations/breaks/", views.breaks, name="breaks"),
    path("operations/breaks/run/", views.reconciliation_run_now, name="reconciliation-run"),
    path("operations/breaks/<int:break_id>/", views.break_detail, name="break"),
]
