"""Operations (and Admin) post deposits, withdrawals and journals: the permission and its place in the
role groups."""

from django.db import migrations

PERMISSION = ("settlement", "posting", "post_cash_movements", "Can post deposits, withdrawals and journals between customers")
GROUPS = ("Operations", "Admin")


def add_permission(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    app_label, model, codename, name = PERMISSION
    content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=codename, defaults={"name": name}
    )
    for group in Group.objects.filter(name__in=GROUPS):
        group.permissions.add(permission)


def remove_permission(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(content_type__app_label=PERMISSION[0], codename=PERMISSION[2]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0019_stream_event_sequencer"),
        ("settlement", "0007_cash_movements"),
    ]

    operations = [migrations.RunPython(add_permission, remove_permission)]
