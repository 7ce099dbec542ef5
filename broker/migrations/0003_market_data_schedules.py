"""Beat schedules of market data, in New York time so they follow daylight saving.

Last prices every minute of the 09:00-16:59 hours on weekdays (the task itself checks that XNYS is
open, holidays and the 09:30 open included); closing prices at :20 and :50 from 16:20 to 19:50, each
run fetching only the tickers still missing that session's bar; stalled jobs resumed every 5 minutes.
"""

from django.db import migrations

SCHEDULES = [
    (
        "Market data: last prices",
        "marketdata.refresh_quotes",
        {"minute": "*", "hour": "9-16", "day_of_week": "1-5"},
        "Quote summary of every active ticker while XNYS is open; tickers backing off after failures wait.",
    ),
    (
        "Market data: closing prices",
        "marketdata.refresh_closes",
        {"minute": "20,50", "hour": "16-19", "day_of_week": "1-5"},
        "Quote and daily bars after the close, retried for the tickers still missing the session's bar.",
    ),
    (
        "Market data: resume stalled jobs",
        "marketdata.resume_jobs",
        {"minute": "*/5", "hour": "*", "day_of_week": "*"},
        "Starts again fetch jobs still pending after 5 minutes (broker down when requested, worker lost).",
    ),
]


def add_schedules(apps, schema_editor):
    crontab_model = apps.get_model("django_celery_beat", "CrontabSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, cron, description in SCHEDULES:
        crontab, _ = crontab_model.objects.get_or_create(
            day_of_month="*", month_of_year="*", timezone="America/New_York", **cron
        )
        task_model.objects.update_or_create(
            name=name,
            defaults={
                "task": task,
                "crontab": crontab,
                "interval": None,
                "queue": "marketdata",
                "description": description,
            },
        )


def remove_schedules(apps, schema_editor):
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    task_model.objects.filter(task__in=[task for _, task, _, _ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("broker", "0002_market_data"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_schedules, remove_schedules)]
