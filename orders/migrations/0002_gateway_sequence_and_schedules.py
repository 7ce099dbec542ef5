"""The gateway sequence (a Postgres sequence: strictly increasing across concurrent gateways) and the
sweeper's beat schedule (stored in the database, editable in admin)."""

from django.db import migrations


def add_schedules(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5s, _ = interval_model.objects.get_or_create(every=5, period="seconds")
    task_model.objects.update_or_create(
        name="Re-drive stuck orders and child orders",
        defaults={
            "task": "orders.sweep",
            "interval": every_5s,
            "queue": "orders",
            "description": "Re-enqueues orders still New and children whose venue task was lost.",
        },
    )


def remove_schedules(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="orders.sweep").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE SEQUENCE IF NOT EXISTS orders_gateway_sequence",
            "DROP SEQUENCE IF EXISTS orders_gateway_sequence",
        ),
        migrations.RunPython(add_schedules, remove_schedules),
    ]
