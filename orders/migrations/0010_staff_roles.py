"""Staff roles for the web screens: groups Trader, Operations and Admin with their permissions."""

from django.db import migrations

# (app_label, model, codename, name)
PERMISSIONS = [
    ("orders", "order", "enter_order", "Can enter orders on the ticket and by bulk booking"),
    ("orders", "order", "cancel_order", "Can cancel open orders"),
    ("orders", "order", "view_blotter", "Can see the blotter, positions and trades"),
    ("orders", "halt", "operate_kill_switch", "Can halt and release trading"),
    ("orders", "trade", "correct_trade", "Can amend and bust trades"),
    ("reporting", "break", "work_breaks", "Can assign, comment on and resolve reconciliation breaks"),
    ("reporting", "reconciliationrun", "run_reconciliation", "Can run reconciliation now"),
]

GROUPS = {
    "Trader": ["enter_order", "cancel_order", "view_blotter"],
    "Operations": ["view_blotter", "operate_kill_switch", "correct_trade", "work_breaks", "run_reconciliation"],
    "Admin": [codename for _, _, codename, _ in PERMISSIONS],
}


def create_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    by_codename = {}
    for app_label, model, codename, name in PERMISSIONS:
        content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        by_codename[codename] = permission
    for group_name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.add(*(by_codename[codename] for codename in codenames))


def remove_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    Group.objects.filter(name__in=GROUPS).delete()
    Permission.objects.filter(
        codename__in=[codename for _, _, codename, _ in PERMISSIONS if codename != "run_reconciliation"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0009_corrections"),
        ("reporting", "0002_reconcile_schedule"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
