"""Beat schedule of the nightly reconciliation: 02:00 UTC every day, on the `reporting` queue."""

from django.db import migrations


def add_schedule(apps, schema_editor):
    crontab_model = apps.get_model("django_celery_beat", "CrontabSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    nightly, _ = crontab_model.objects.get_or_create(
        minute="0", hour="2", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    task_model.objects.update_or_create(
        name="Reconcile the books",
        defaults={
            "task": "reporting.reconcile",
            "crontab": nightly,
            "interval": None,
            "queue": "reporting",
            "description": "Checks orders against trades, trades against venue executions, the ledger's balance, "
            "customer cash and holdings; records every mismatch as a break.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="reporting.reconcile").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("reporting", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
