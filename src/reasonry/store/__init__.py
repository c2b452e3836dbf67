"""The SQLite store: every SQL statement of reasonry lives in this package, grouped by table family.

- base.py: connection, named migrations (migrations.py), transactions, the chunked `IN (...)` query
- runs.py: runs, their models, input rows, requests, results and attempts; reading a run back as RunRecords
- flags.py: quality flags and which results were checked
- steering.py: steering versions
- debate.py: debate nodes
- browse.py: the web Runs page's paged queries
- hygiene.py: dedup/decontaminate marks and which runs were checked
- usage.py: the usage ledger (tokens, requests, failures, retries, seconds per run and model)
"""

from __future__ import annotations

from reasonry.store.base import StoreBase
from reasonry.store.browse import BrowseMixin
from reasonry.store.debate import NODE_FIELDS, DebateMixin
from reasonry.store.flags import FlagsMixin
from reasonry.store.hygiene import HygieneMixin
from reasonry.store.migrations import MIGRATIONS
from reasonry.store.records import RESULT_FIELDS, RunRecord, StoredResult, new_run_id
from reasonry.store.runs import RunsMixin
from reasonry.store.steering import SteeringMixin
from reasonry.store.usage import Usage, UsageMixin


class Store(RunsMixin, FlagsMixin, SteeringMixin, DebateMixin, BrowseMixin, UsageMixin, HygieneMixin,
            StoreBase):
    """One reasonry database. `Store(path)` creates it if needed; `Store.existing(path)` only opens one."""


__all__ = ["MIGRATIONS", "NODE_FIELDS", "RESULT_FIELDS", "RunRecord", "Store", "StoreBase", "StoredResult",
           "Usage", "new_run_id"]
