"""Beat schedule of the nightly aggregation: 16:30 New York time every day (after the XNYS close at
16:00, in New York time so it follows daylight saving), on the `reporting` queue."""

from django.db import migrations


def add_schedule(apps, schema_editor):
    crontab_model = apps.get_model("django_celery_beat", "CrontabSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    after_close, _ = crontab_model.objects.get_or_create(
        minute="30", hour="16", day_of_week="*", day_of_month="*", month_of_year="*", timezone="America/New_York"
    )
    task_model.objects.update_or_create(
        name="Aggregate the trading day",
        defaults={
            "task": "reporting.aggregate_nightly",
            "crontab": after_close,
            "interval": None,
            "queue": "reporting",
            "description": "Computes customer days, ticker days and position snapshots: yesterday's final "
            "rows and today's provisional ones (trading goes on after the close; the next run makes them final).",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="reporting.aggregate_nightly").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("reporting", "0003_report_days"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
