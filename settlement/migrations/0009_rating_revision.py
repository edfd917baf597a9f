"""A revision number for everything rating reads about the account tree and prices (issue 4).

Ingestion resolves each batch's account codes to accounts and ancestors and prices each (account,
model, day) through a cascade query; the answers are remembered in the worker between batches
(settlement.services.rating.RatingMemo) and must be forgotten the moment any input changes. Every
change to those inputs bumps
`settlement_rating_revision.revision` in the same transaction (triggers below), so the change and
the new revision become visible together; a worker that sees another revision than the one its
answers were computed under drops them all. Revisions come from a sequence, which never hands out a
number twice: a change rolled back leaves a revision nobody will see committed.

The inputs: accounts created, and an account's place in the tree, book, terms, code and currency;
price lists and their overrides; list price versions; provider models and providers. Status, credit
limits and balances are not read from the memo and do not bump it. The table has no Django model:
`flush` leaves it alone.
"""

from django.db import migrations

WATCHED = (
    "accounts_pricelist",
    "accounts_priceoverride",
    "procurement_listpriceversion",
    "procurement_providermodel",
    "procurement_provider",
)

FORWARD = [
    "CREATE SEQUENCE settlement_rating_revision_seq",
    """
    CREATE TABLE settlement_rating_revision (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        revision bigint NOT NULL
    )
    """,
    "INSERT INTO settlement_rating_revision VALUES (true, nextval('settlement_rating_revision_seq'))",
    """
    CREATE FUNCTION settlement_rating_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE settlement_rating_revision SET revision = nextval('settlement_rating_revision_seq');
        RETURN NULL;
    END
    $$
    """,
    *(
        f"""
        CREATE TRIGGER {table}_rating_revision
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION settlement_rating_revision_bump()
        """
        for table in WATCHED
    ),
    # Accounts are updated for many reasons (status, limits, names): only what rating reads counts.
    """
    CREATE TRIGGER accounts_account_rating_revision
    AFTER UPDATE ON accounts_account
    FOR EACH ROW
    WHEN ((OLD.parent_id, OLD.ancestor_ids, OLD.book_id, OLD.terms, OLD.code, OLD.currency)
          IS DISTINCT FROM (NEW.parent_id, NEW.ancestor_ids, NEW.book_id, NEW.terms, NEW.code, NEW.currency))
    EXECUTE FUNCTION settlement_rating_revision_bump()
    """,
    """
    CREATE TRIGGER accounts_account_rating_revision_insert
    AFTER INSERT OR DELETE OR TRUNCATE ON accounts_account
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_rating_revision_bump()
    """,
]

BACKWARD = [
    "DROP TRIGGER accounts_account_rating_revision_insert ON accounts_account",
    "DROP TRIGGER accounts_account_rating_revision ON accounts_account",
    *(f"DROP TRIGGER {table}_rating_revision ON {table}" for table in WATCHED),
    "DROP FUNCTION settlement_rating_revision_bump()",
    "DROP TABLE settlement_rating_revision",
    "DROP SEQUENCE settlement_rating_revision_seq",
]


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_finance_roles"),
        ("procurement", "0002_upstream_statements"),
        ("settlement", "0008_ingestion_hot_tables"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
