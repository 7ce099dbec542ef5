from django.urls import path

from orders.api import accounts, statements, views

urlpatterns = [
    path("orders", views.OrderListCreateView.as_view(), name="orders"),
    path("orders/<uuid:order_id>", views.OrderDetailView.as_view(), name="order-detail"),
    path("orders/<uuid:order_id>/cancel", views.OrderCancelView.as_view(), name="order-cancel"),
    path("trades", views.TradeListView.as_view(), name="trades"),
    path("trades/<uuid:trade_id>/history", views.TradeHistoryView.as_view(), name="trade-history"),
    path("trades/<uuid:trade_id>/confirmation", views.TradeConfirmationView.as_view(), name="trade-confirmation"),
    path("trades/<uuid:trade_id>/amend", views.TradeCorrectView.as_view(), name="trade-amend"),
    path("trades/<uuid:trade_id>/bust", views.TradeCorrectView.as_view(bust=True), name="trade-bust"),
    path("customers/<str:customer_id>", views.CustomerDetailView.as_view(), name="customer-detail"),
    path("customers/<str:customer_id>/holdings", views.CustomerHoldingsView.as_view(), name="customer-holdings"),
    path(
        "customers/<str:customer_id>/activities", accounts.CustomerActivitiesView.as_view(), name="customer-activities"
    ),
    path(
        "customers/<str:customer_id>/statements", statements.CustomerStatementView.as_view(), name="customer-statement"
    ),
    path("customers/<str:customer_id>/cash-movements", accounts.CashMovementView.as_view(), name="cash-movements"),
    path("journals", accounts.JournalView.as_view(), name="journals"),
    path("halts", views.HaltListSetView.as_view(), name="halts"),
]
