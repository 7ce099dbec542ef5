"""The Celery app. Settings come from Django's, under the CELERY_ namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings")

app = Celery("broker")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes the database connection (here: the process's pool) around every task
# unless told to reuse it; reconnecting per task would cost more than many of our tasks do.
app.conf["CELERY_DB_REUSE_MAX"] = 1000
app.autodiscover_tasks()
