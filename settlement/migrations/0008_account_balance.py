"""A customer account's running balance, kept by the database.

Order placement checks what a customer has available on every order; it summed the account's entries,
all of them since the account was opened, so each order cost more than the one before (97 entries read
an order after 20 s at 100 orders/s). `Account.balance` is now that sum, kept by a statement-level
trigger on the ledger (append-only: inserts are the only change): one UPDATE per inserting statement
adds each customer account's new entries. The accounts it updates are locked in id order, so two
statements posting to the same customers cannot wait for each other in opposite orders. The house's
accounts (fee income, venue clearing, client funding) take part in every trade and keep no balance
(NULL): a running total there would be one row every settlement waits on.
"""

from django.db import migrations, models

CUSTOMER_KINDS = "('CustomerCash', 'CustomerSecurities')"

BALANCE_TRIGGER = f"""
UPDATE settlement_account AS a
   SET balance = COALESCE((SELECT SUM(e.amount) FROM settlement_ledgerentry e WHERE e.account_id = a.id), 0)
 WHERE a.kind IN {CUSTOMER_KINDS};

CREATE FUNCTION settlement_account_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM settlement_account
     WHERE id IN (SELECT account_id FROM new_entries) AND kind IN {CUSTOMER_KINDS}
     ORDER BY id FOR NO KEY UPDATE;
    UPDATE settlement_account AS a
       SET balance = a.balance + n.amount
      FROM (SELECT account_id, SUM(amount) AS amount FROM new_entries GROUP BY account_id) AS n
     WHERE a.id = n.account_id AND a.kind IN {CUSTOMER_KINDS};
    RETURN NULL;
END $$;

CREATE TRIGGER settlement_account_balance
    AFTER INSERT ON settlement_ledgerentry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_account_balance();
"""

DROP_TRIGGER = """
DROP TRIGGER settlement_account_balance ON settlement_ledgerentry;
DROP FUNCTION settlement_account_balance();
"""


class Migration(migrations.Migration):
    dependencies = [("settlement", "0007_cash_movements")]

    operations = [
        migrations.AddField(
            model_name="account",
            name="balance",
            field=models.DecimalField(blank=True, decimal_places=6, editable=False, max_digits=24, null=True),
        ),
        migrations.RunSQL(BALANCE_TRIGGER, DROP_TRIGGER),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.CheckConstraint(
                condition=(
                    models.Q(kind__in=["CustomerCash", "CustomerSecurities"], balance__isnull=False)
                    | (~models.Q(kind__in=["CustomerCash", "CustomerSecurities"]) & models.Q(balance__isnull=True))
                ),
                name="account_balance_kept_for_customers",
            ),
        ),
    ]
