"""Settlement's writers. Usage ingestion and rating live here (issue 4); the close, invoices and
payments join as modules of this package."""

from settlement.services.credit_control import authorization_for, credit_states_refresh
from settlement.services.ingestion import IngestResult, usage_ingest
from settlement.services.partitions import usage_partitions_ahead, usage_partitions_ensure

__all__ = [
    "IngestResult",
    "authorization_for",
    "credit_states_refresh",
    "usage_ingest",
    "usage_partitions_ahead",
    "usage_partitions_ensure",
]
