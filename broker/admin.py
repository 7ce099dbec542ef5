from django.contrib import admin

from broker.models import Customer, Ticker


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["customer_id", "name", "email", "initial_funds", "user", "created_at"]
    search_fields = ["customer_id", "name", "email"]
    readonly_fields = ["created_at"]
    raw_id_fields = ["user"]


@admin.register(Ticker)
class TickerAdmin(admin.ModelAdmin):
    list_display = ["symbol", "name", "exchange", "currency", "reference_price", "reference_date", "active"]
    list_filter = ["exchange", "active"]
    search_fields = ["symbol", "name"]
