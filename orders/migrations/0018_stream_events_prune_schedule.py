"""Beat schedule of the fill stream's retention: prune its events every hour (a light, housekeeping
queue; the settlement worker takes it)."""

from django.db import migrations


def add_schedule(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    hourly, _ = interval_model.objects.get_or_create(every=1, period="hours")
    task_model.objects.update_or_create(
        name="Prune the fill stream's events",
        defaults={
            "task": "orders.prune_stream_events",
            "interval": hourly,
            "crontab": None,
            "queue": "settlement",
            "description": "Deletes stream events older than STREAM_EVENTS_KEEP_HOURS (at least 24 h); a "
            "subscriber resuming from before them gets a reset.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="orders.prune_stream_events").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0017_stream_events"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
