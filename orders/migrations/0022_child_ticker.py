"""Each child order carries its parent's ticker (see ChildOrder.ticker): added, filled from the parents,
then required."""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
UPDATE orders_childorder AS c SET ticker_id = o.ticker_id FROM orders_order AS o WHERE o.id = c.parent_id;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("broker", "0004_dead_letters"),
        ("orders", "0021_stream_events_numbered_once"),
    ]

    operations = [
        migrations.AddField(
            model_name="childorder",
            name="ticker",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="broker.ticker",
            ),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="childorder",
            name="ticker",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="broker.ticker"
            ),
        ),
    ]
