"""Beat schedule of the settlement run (settles what is due: T+1 trades, and any T+0 trade whose task was lost)."""

from django.db import migrations


def add_schedule(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = interval_model.objects.get_or_create(every=1, period="minutes")
    task_model.objects.update_or_create(
        name="Settle trades that are due",
        defaults={
            "task": "orders.settle_due",
            "interval": every_minute,
            "queue": "settlement",
            "description": "Posts every unsettled trade whose settlement date has come to the ledger.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="orders.settle_due").delete()


class Migration(migrations.Migration):
    dependencies = [("orders", "0005_trade_settles_on")]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
