"""Database guards of the books (§8), enforced whatever code runs.

- ledger_entry_balanced: a deferred constraint trigger that, at commit, refuses an entry with fewer
  than two postings or whose debits and credits differ in any currency (fired by new entries and
  by new postings, so a leg added later to an old entry is checked too).
- ledger_immutable: refuses UPDATE and DELETE of entries and postings; corrections are reversals.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION ledger_check_entry_balanced(p_entry_id bigint) RETURNS void AS $$
DECLARE
    legs integer;
    bad record;
BEGIN
    SELECT count(*) INTO legs FROM ledger_posting WHERE entry_id = p_entry_id;
    IF legs < 2 THEN
        RAISE EXCEPTION 'journal entry % has % postings; at least two are required', p_entry_id, legs
            USING ERRCODE = 'check_violation';
    END IF;
    FOR bad IN
        SELECT currency,
               sum(CASE WHEN side = 'debit' THEN amount ELSE -amount END) AS difference
        FROM ledger_posting WHERE entry_id = p_entry_id
        GROUP BY currency
        HAVING sum(CASE WHEN side = 'debit' THEN amount ELSE -amount END) <> 0
    LOOP
        RAISE EXCEPTION 'journal entry % does not balance in %: debits - credits = %',
            p_entry_id, bad.currency, bad.difference USING ERRCODE = 'check_violation';
    END LOOP;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION ledger_entry_balanced_on_entry() RETURNS trigger AS $$
BEGIN
    PERFORM ledger_check_entry_balanced(NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION ledger_entry_balanced_on_posting() RETURNS trigger AS $$
BEGIN
    PERFORM ledger_check_entry_balanced(NEW.entry_id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER ledger_entry_balanced
    AFTER INSERT ON ledger_journalentry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced_on_entry();

CREATE CONSTRAINT TRIGGER ledger_posting_balanced
    AFTER INSERT ON ledger_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced_on_posting();

CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% of posted ledger rows (%) is not allowed; post a reversal instead',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entry_immutable
    BEFORE UPDATE OR DELETE ON ledger_journalentry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_posting_immutable
    BEFORE UPDATE OR DELETE ON ledger_posting
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS ledger_posting_immutable ON ledger_posting;
DROP TRIGGER IF EXISTS ledger_entry_immutable ON ledger_journalentry;
DROP FUNCTION IF EXISTS ledger_refuse_change();
DROP TRIGGER IF EXISTS ledger_posting_balanced ON ledger_posting;
DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_journalentry;
DROP FUNCTION IF EXISTS ledger_entry_balanced_on_posting();
DROP FUNCTION IF EXISTS ledger_entry_balanced_on_entry();
DROP FUNCTION IF EXISTS ledger_check_entry_balanced(bigint);
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
