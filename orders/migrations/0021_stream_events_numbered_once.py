"""Stream events are append-only in the database itself: a row may be numbered once (its `event_id` set
from NULL, by the sequencer) and is never changed otherwise; old numbered rows are deleted by the
prune. A client that read eventId N can rely on N meaning the same event on every later read."""

from django.db import migrations

NUMBERED_ONCE = """
CREATE FUNCTION orders_streamevent_numbered_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.event_id IS NULL AND NEW.event_id IS NOT NULL AND NEW.id = OLD.id
       AND NEW.customer_id = OLD.customer_id AND NEW.kind = OLD.kind AND NEW.payload = OLD.payload
       AND NEW.created_at = OLD.created_at THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'stream events are append-only: an event is numbered once and never changed'
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER orders_streamevent_numbered_once
    BEFORE UPDATE ON orders_streamevent
    FOR EACH ROW EXECUTE FUNCTION orders_streamevent_numbered_once();
"""


class Migration(migrations.Migration):
    dependencies = [("orders", "0020_cash_movement_permission")]

    operations = [
        migrations.RunSQL(
            NUMBERED_ONCE,
            "DROP TRIGGER orders_streamevent_numbered_once ON orders_streamevent; "
            "DROP FUNCTION orders_streamevent_numbered_once();",
        ),
    ]
