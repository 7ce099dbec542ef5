"""Report screens (positions, trades and their CSV, tickers and their charts, the daily reports with their
charts and CSV) and the reconciliation breaks screen."""

from django.urls import path

from reporting import market_views, report_views, views

app_name = "reporting"

urlpatterns = [
    path("positions/", views.positions, name="positions"),
    path("trades/", views.trades, name="trades"),
    path("trades/export.csv", views.trades_csv, name="trades-csv"),
    path("tickers/", market_views.tickers, name="tickers"),
    path("tickers/refresh/", market_views.market_data_refresh, name="market-data-refresh"),
    path("tickers/<str:symbol>/", market_views.ticker, name="ticker"),
    path("reports/", report_views.reports, name="reports"),
    path("reports/customers/<str:customer_id>/", report_views.customer_statement, name="report-customer"),
    path("reports/tickers/<str:symbol>/", report_views.ticker_days, name="report-ticker"),
    path("operations/breaks/", views.breaks, name="breaks"),
    path("operations/breaks/run/", views.reconciliation_run_now, name="reconciliation-run"),
    path("operations/breaks/<int:break_id>/", views.break_detail, name="break"),
]
