"""Run ids as people type them: a unique prefix, `latest`, or nothing.

`run-20261203-140212-3f9a` is long; `run-20261203-1402`, `20261203-1402` (the `run-` may be left
out) or `latest` name it as well, when they name only it. Every command that takes a run resolves
it here, through the API.
"""

from __future__ import annotations

from collections.abc import Callable

from stepledger.store.port import EventStore

from ..errors import RunNotFound, UserInputError

LATEST = "latest"
RUN_PREFIX = "run-"


class AmbiguousRun(UserInputError):
    """A prefix that names several runs."""


def resolve_run_id(store: EventStore, text: str | None, missing_ok: bool = False) -> str:
    """The id of the run `text` names (None or `latest`: the newest run of the log); with
    `missing_ok`, a text that names no run is kept as it is (a run about to start, followed)."""
    if text is not None and text != LATEST and store.run_state(text) is not None:
        return text  # a whole id: one look at the runs table, not a scan of the log
    ids = store.run_ids()
    if text is None or text == LATEST:
        if not ids:
            raise UserInputError("this log has no runs yet; start one with `stepledger run FILE`")
        return ids[-1]
    if text in ids:
        return text
    return _by_prefix(text, ids, missing_ok)


def newest_run(store: EventStore, wanted: Callable[[str], bool], what: str) -> str:
    """The newest run for which `wanted(run_id)` holds; UserInputError naming `what` if none does."""
    for run_id in reversed(store.run_ids()):
        if wanted(run_id):
            return run_id
    raise UserInputError(f"this log has no {what}; `stepledger runs` lists the runs")


def _by_prefix(text: str, ids: list[str], missing_ok: bool) -> str:
    wanted = text if text.startswith(RUN_PREFIX) else RUN_PREFIX + text
    found = [run_id for run_id in ids if text and (run_id.startswith(text) or run_id.startswith(wanted))]
    if len(found) == 1:
        return found[0]
    if not found and missing_ok:
        return text
    if not found:
        raise RunNotFound(f"no run {text!r} in this log; `stepledger runs` lists the runs")
    shown = ", ".join(found[-3:][::-1]) + (", …" if len(found) > 3 else "")
    raise AmbiguousRun(
        f"{text!r} names {len(found)} runs ({shown}); give more of the id, or `latest` for the newest"
    )
