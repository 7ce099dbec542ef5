"""Event ids assigned after commit by the stream's sequencer instead of under a lock at insert: the
rows already there keep their id as their eventId."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0018_stream_events_prune_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="streamevent",
            name="event_id",
            field=models.BigIntegerField(null=True, unique=True),
        ),
        migrations.RunSQL("UPDATE orders_streamevent SET event_id = id", migrations.RunSQL.noop),
        migrations.RemoveIndex(model_name="streamevent", name="streamevent_customer"),
        migrations.AddIndex(
            model_name="streamevent",
            index=models.Index(fields=["customer", "event_id"], name="streamevent_customer"),
        ),
        migrations.AddIndex(
            model_name="streamevent",
            index=models.Index(
                fields=["id"], condition=models.Q(event_id__isnull=True), name="streamevent_unsequenced"
            ),
        ),
    ]
