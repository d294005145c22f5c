"""Answers to questions about past runs, from the event log: the functions behind `stepledger audit`.

Each returns plain rows (dicts) and takes an `AuditFilter` (workstream, run, step, time range). They
run plain SQL on the store's own connection (reader.py): the cross-run questions read the outcome
events' audit indexes (sources.py), the others the read-only views created by the migrations
(`run_summaries`, `operator_actions`) or one run's events; `why` folds one run.
"""

from stepledger.store.errors import NotASqlLog

from .durations import durations, historical_durations, percentile, trend
from .filters import AuditFilter, BadAuditInput, make_filter, parse_last, parse_time
from .html import timeline_html
from .queries import (
    actions,
    failures,
    run_summaries_rows,
    run_summary,
    timeline,
)
from .retries import newest_retries, retries
from .why import StepNotFound, why

run_summaries = run_summaries_rows

__all__ = [
    "AuditFilter",
    "BadAuditInput",
    "NotASqlLog",
    "StepNotFound",
    "actions",
    "durations",
    "failures",
    "historical_durations",
    "make_filter",
    "newest_retries",
    "parse_last",
    "parse_time",
    "percentile",
    "retries",
    "run_summaries",
    "run_summaries_rows",
    "run_summary",
    "timeline",
    "timeline_html",
    "trend",
    "why",
]
