from django.urls import path

from broker.api import marketdata

urlpatterns = [
    path("tickers", marketdata.TickerListView.as_view(), name="tickers"),
    path("tickers/<str:symbol>", marketdata.TickerDetailView.as_view(), name="ticker-detail"),
    path("tickers/<str:symbol>/history", marketdata.TickerHistoryView.as_view(), name="ticker-history"),
    path("market-data", marketdata.MarketDataJobCreateView.as_view(), name="market-data"),
    path("market-data/<uuid:job_id>", marketdata.MarketDataJobDetailView.as_view(), name="market-data-job"),
]
