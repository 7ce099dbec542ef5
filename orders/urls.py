"""Staff screens of the order desk (the REST API is in orders/api/urls.py)."""

from django.urls import path

from orders import account_views, dead_letter_views, views

app_name = "orders"

urlpatterns = [
    path("orders/ticket/", views.ticket, name="ticket"),
    path("orders/ticket/quote/", views.ticket_quote, name="ticket-quote"),
    path("orders/blotter/", views.blotter, name="blotter"),
    path("orders/bulk/", views.bulk_upload, name="bulk"),
    path("orders/bulk/<uuid:batch_id>/", views.bulk_batch, name="bulk-batch"),
    path("orders/bulk/<uuid:batch_id>/book/", views.bulk_book, name="bulk-book"),
    path("orders/<uuid:order_id>/", views.order_detail, name="order-detail"),
    path("orders/<uuid:order_id>/cancel/", views.order_cancel, name="order-cancel"),
    path("accounts/", account_views.accounts, name="accounts"),
    path("accounts/statements/", account_views.statements, name="statements"),
    path("operations/halts/", views.halts, name="halts"),
    path("operations/dead-letters/", dead_letter_views.dead_letters, name="dead-letters"),
    path("operations/dead-letters/<int:letter_id>/", dead_letter_views.dead_letter, name="dead-letter"),
    path("operations/trades/<uuid:trade_id>/correct/", views.trade_correct, name="trade-correct"),
]
