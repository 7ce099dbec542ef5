from typing import Any

from django.apps import AppConfig
from django.db import transaction


class PoolsConfig(AppConfig):
    name = "pools"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from pools.models import Pool

        post_save.connect(_pool_changed, sender=Pool, dispatch_uid="pools.venues_changed.save")
        post_delete.connect(_pool_changed, sender=Pool, dispatch_uid="pools.venues_changed.delete")


def _pool_changed(**kwargs: Any) -> None:
    from pools.selectors import venues_changed

    # Now (so this transaction's own reads see the change) and again after commit (so no other process
    # keeps what it may have reloaded in between, before the change was visible to it).
    venues_changed()
    transaction.on_commit(venues_changed)
