"""The ledger's invariants in the database itself, not only in code.

- Every posting balances per asset (checked at COMMIT by a deferred constraint trigger, so a posting's
  entries may be inserted one by one inside its transaction).
- Entries are append-only: UPDATE and DELETE are refused; corrections post reversing entries.
"""

from django.db import migrations

BALANCED = """
CREATE FUNCTION settlement_posting_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM settlement_ledgerentry
        WHERE posting_id = NEW.posting_id
        GROUP BY asset HAVING SUM(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger posting % does not balance', NEW.posting_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER settlement_ledger_balanced
    AFTER INSERT ON settlement_ledgerentry DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION settlement_posting_balanced();
"""

APPEND_ONLY = """
CREATE FUNCTION settlement_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: post a reversal instead' USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER settlement_ledger_append_only
    BEFORE UPDATE OR DELETE ON settlement_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION settlement_ledger_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("settlement", "0001_initial")]

    operations = [
        migrations.RunSQL(
            BALANCED,
            "DROP TRIGGER settlement_ledger_balanced ON settlement_ledgerentry; "
            "DROP FUNCTION settlement_posting_balanced();",
        ),
        migrations.RunSQL(
            APPEND_ONLY,
            "DROP TRIGGER settlement_ledger_append_only ON settlement_ledgerentry; "
            "DROP FUNCTION settlement_ledger_append_only();",
        ),
    ]
