from django.urls import path

from reporting.api import views

urlpatterns = [
    path("reports/customers", views.CustomerReportListView.as_view(), name="report-customers"),
    path("reports/tickers", views.TickerReportListView.as_view(), name="report-tickers"),
    path("customers/<str:customer_id>/positions", views.CustomerPositionsView.as_view(), name="customer-positions"),
    path("customers/<str:customer_id>/pnl", views.CustomerPnlView.as_view(), name="customer-pnl"),
    path("customers/<str:customer_id>/portfolio", views.CustomerPortfolioView.as_view(), name="customer-portfolio"),
]
