from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "broker"
    verbose_name = "Broker"

    def ready(self) -> None:
        # Connects Celery's failure and success signals: every process that runs tasks records the
        # ones that fail for good (broker/deadletters.py).
        from broker import deadletters  # noqa: F401
        from broker.sql import psycopg_keep_conversions

        psycopg_keep_conversions()
