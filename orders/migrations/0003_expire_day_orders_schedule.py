"""Beat schedule for Day-order expiry (acts only when MARKET_CALENDAR is set)."""

from django.db import migrations


def add_schedule(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = interval_model.objects.get_or_create(every=1, period="minutes")
    task_model.objects.update_or_create(
        name="Expire Day orders after the market close",
        defaults={
            "task": "orders.expire_day_orders",
            "interval": every_minute,
            "queue": "orders",
            "description": "With MARKET_CALENDAR=XNYS, Day orders entered before the last close expire.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="orders.expire_day_orders").delete()


class Migration(migrations.Migration):
    dependencies = [("orders", "0002_gateway_sequence_and_schedules")]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
