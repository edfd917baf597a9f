"""The lines of an issued invoice stay immutable (§7), checked once per statement instead of once per
row: the row-level guard of 0003 looked the invoice up for every line and made drafting a month of
~400,000 lines about 10x slower (docs/benchmarks.md "Close"). The statement-level guard joins the
lines the statement touched (its transition tables) to settlement_invoice once and refuses the whole
statement if any of them belongs, before or after the change, to an invoice that is not a draft.

PostgreSQL allows transition tables only on single-event AFTER triggers, hence three triggers sharing
one function. The check runs after the statement but before it completes, so raising aborts it just
as the row-level BEFORE guard did; it sees the invoices as they stand once the statement has run,
which is at least as strict (no statement on lines may issue an invoice and add to it at once)."""

from django.db import migrations

STATEMENT_GUARD = r"""
DROP TRIGGER IF EXISTS settlement_invoiceline_guard ON settlement_invoiceline;
DROP FUNCTION IF EXISTS settlement_invoiceline_guard();

CREATE FUNCTION settlement_invoiceline_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM settlement_invoice
        WHERE status <> 'draft' AND id IN (SELECT invoice_id FROM new_lines)
        LIMIT 1;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM 1 FROM settlement_invoice
        WHERE status <> 'draft' AND id IN (SELECT invoice_id FROM old_lines)
        LIMIT 1;
    ELSE
        -- A line moved from one invoice to another changes both: check either side.
        PERFORM 1 FROM settlement_invoice
        WHERE status <> 'draft'
          AND id IN (SELECT invoice_id FROM old_lines UNION SELECT invoice_id FROM new_lines)
        LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'the lines of an issued invoice cannot change'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER settlement_invoiceline_guard_insert
    AFTER INSERT ON settlement_invoiceline
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_invoiceline_guard();

CREATE TRIGGER settlement_invoiceline_guard_update
    AFTER UPDATE ON settlement_invoiceline
    REFERENCING OLD TABLE AS old_lines NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_invoiceline_guard();

CREATE TRIGGER settlement_invoiceline_guard_delete
    AFTER DELETE ON settlement_invoiceline
    REFERENCING OLD TABLE AS old_lines
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_invoiceline_guard();
"""

# The row-level guard of 0003, verbatim.
ROW_GUARD = r"""
DROP TRIGGER IF EXISTS settlement_invoiceline_guard_delete ON settlement_invoiceline;
DROP TRIGGER IF EXISTS settlement_invoiceline_guard_update ON settlement_invoiceline;
DROP TRIGGER IF EXISTS settlement_invoiceline_guard_insert ON settlement_invoiceline;
DROP FUNCTION IF EXISTS settlement_invoiceline_guard();

CREATE FUNCTION settlement_invoiceline_guard() RETURNS trigger AS $$
DECLARE
    invoice_ids bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        invoice_ids := ARRAY[NEW.invoice_id];
    ELSIF TG_OP = 'DELETE' THEN
        invoice_ids := ARRAY[OLD.invoice_id];
    ELSE
        invoice_ids := ARRAY[OLD.invoice_id, NEW.invoice_id];
    END IF;
    IF EXISTS (SELECT 1 FROM settlement_invoice WHERE id = ANY(invoice_ids) AND status <> 'draft') THEN
        RAISE EXCEPTION 'the lines of an issued invoice cannot change'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER settlement_invoiceline_guard
    BEFORE INSERT OR UPDATE OR DELETE ON settlement_invoiceline
    FOR EACH ROW EXECUTE FUNCTION settlement_invoiceline_guard();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0005_dunning"),
    ]

    operations = [
        migrations.RunSQL(STATEMENT_GUARD, ROW_GUARD),
    ]
