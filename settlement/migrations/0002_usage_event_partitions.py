"""The raw usage event table, partitioned by month on occurred_at (§5).

Partitions are created ahead by `usage_partitions_ensure_task` (beat) and on demand by ingestion
for a month not yet present. The idempotency guarantee lives in settlement_usagekey, because a
unique index on a partitioned table must include the partition key.
"""

from django.db import migrations

FORWARD = r"""
CREATE TABLE settlement_usageevent (
    key_id bigint NOT NULL,
    account_id bigint NOT NULL,
    request_id varchar(200) NOT NULL,
    model_id bigint NOT NULL,
    model_code varchar(100) NOT NULL,
    input_tokens bigint NOT NULL CHECK (input_tokens >= 0),
    cached_input_tokens bigint NOT NULL CHECK (cached_input_tokens >= 0),
    cache_write_tokens bigint NOT NULL CHECK (cache_write_tokens >= 0),
    output_tokens bigint NOT NULL CHECK (output_tokens >= 0),
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    batch_id bigint NOT NULL,
    tags jsonb NULL,
    PRIMARY KEY (key_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX settlement_usageevent_account_at ON settlement_usageevent (account_id, occurred_at);

-- Append-only: corrections to usage are credit notes, never edits of what the gateway reported.
CREATE OR REPLACE FUNCTION settlement_usageevent_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'usage events are append-only (% refused)', TG_OP USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER settlement_usageevent_immutable BEFORE UPDATE OR DELETE ON settlement_usageevent
    FOR EACH ROW EXECUTE FUNCTION settlement_usageevent_immutable();
"""

BACKWARD = r"""
DROP TABLE IF EXISTS settlement_usageevent CASCADE;
DROP FUNCTION IF EXISTS settlement_usageevent_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("settlement", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
