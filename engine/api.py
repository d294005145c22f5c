"""The application API: every operation a front end needs, on one object opened on a database URL.

The command line is parse → a call here → render; a web view or a worker service makes the same
calls. Results carry what a front end shows (a finished run's acceptance results and measured
times, what an operator's decision leads to), so no front end reads the log or opens the store
itself. Imports stay inside the methods: a short command pays only for what it uses.

    with Stepledger(db_url) as api:
        prepared = api.prepare_run(Path("ws.json"))   # loads, checks, decides the pool size, starts it
        report = api.run(prepared, reporter)          # records the run and drives it to its end
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepledger.events import RecordedEvent
    from stepledger.events.state import RunState
    from stepledger.store.port import EventStore

    from .audit import AuditFilter
    from .chaos.plan import ChaosPlan
    from .chaos.report import ChaosReport, IterationResult
    from .execution.pool import WorkerPool
    from .fleet.dispatcher import FleetDispatcher
    from .fleet.reading import FleetLogs, FleetReader, LogPart
    from .read.logs import StepLogs
    from .read.measured import MeasuredTimes
    from .read.replay import Violation
    from .run.reporting import Reporter
    from .workstream import Problem
    from .workstream.model import Workstream

from .workstream.limits import MAX_WORKERS

__all__ = [
    "MAX_WORKERS", "DetachedRun", "Intervention", "PreparedRun", "Problem", "ResumePlan", "RunReport",
    "Stepledger", "SubmittedRun", "Workstream", "WorkstreamInvalid", "check_db_url", "error_types",  # noqa: F822 - resolved by __getattr__
]  # fmt: skip

FOLLOW_PATIENCE_S = 300.0  # how long following the log waits for a database that went away


def check_db_url(url: str | None) -> str | None:
    """Refuse (StoreError, one line) a URL the log cannot be kept in, before anything else happens."""
    if url:
        from stepledger.store.connect import check_url

        check_url(url)
    return url


def error_types() -> tuple[type[BaseException], ...]:
    """The exception families that are the user's to fix: a front end shows them, not a traceback."""
    from stepledger.store.errors import StoreError

    from .errors import StepledgerError
    from .workstream.profiles import ProfileError

    return (StepledgerError, StoreError, ProfileError)


@dataclass
class PreparedRun:
    """A run about to start: its workstream, its id, and its pool — started, of the one size decided."""

    workstream: Workstream
    run_id: str
    workers: int
    max_workers: int | None
    pool: WorkerPool | FleetDispatcher  # the second for `run --on-workers` (docs/workers.md)
    warnings: tuple[Problem, ...] = ()  # what loading the file said: unknown fields, settings not acted on
    merge_into: str | None = None  # --merge-into: where a passed run's integration branch goes
    on_workers: bool = False  # run --on-workers: `pool` is the fleet's
    takeover: bool = True  # with on_workers: the fleet takes the run over if this process dies
    drive_queue: str | None = None  # with takeover: whose workers take it over (None: the default queue)

    @property
    def dependencies(self) -> int:
        return sum(len(s.requires) for s in self.workstream.steps)


@dataclass(frozen=True)
class ResumePlan:
    """What resuming a run will start from: its folded state, and whether its file changed since."""

    run: RunState
    file_changed: bool

    @property
    def steps(self) -> int:
        return len(self.run.workstream.get("steps", [])) or 1


@dataclass(frozen=True)
class RunReport:
    """How a run (or a resumed run) ended, with what a front end shows about it."""

    run_id: str
    outcome: str
    run: RunState
    acceptance: list[RecordedEvent] = field(default_factory=list)
    times: MeasuredTimes | None = None


@dataclass(frozen=True)
class DetachedRun:
    """A run started in the background: its id, its process, and the file its output goes to."""

    run_id: str
    pid: int
    output: Path


@dataclass(frozen=True)
class SubmittedRun:
    """A run recorded for the fleet to drive (`stepledger submit`), and what loading its file said."""

    run_id: str
    warnings: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class HandedRun:
    """A stopped run handed back to the fleet (`resume --submit`): the queue whose workers drive
    it, and whether its drive job was enqueued now (False: one was waiting already)."""

    run_id: str
    queue: str
    enqueued: bool


@dataclass(frozen=True)
class Intervention:
    """An operator's decision, recorded, and what happens next.

    `next` is "woken" (the live orchestrator here acts on it), "elsewhere" (one on another host
    does), or "resume" (nobody drives the run: the caller may resume it, or leave it).
    """

    message: str
    next: str
    detail: str = ""


class Stepledger:
    """The operations of stepledger on the log at `db` (None: STEPLEDGER_DB or .stepledger/ledger.db)."""

    def __init__(self, db: str | None = None, workdir: str | Path = ".") -> None:
        self.db = check_db_url(db)
        self.workdir = str(workdir)
        self._store: EventStore | None = None
        self._writable = False
        self._fleet: FleetReader | None = None  # `status`'s connection to a fleet's database

    def __enter__(self) -> Stepledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store (and the fleet's reading connection), if it was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._fleet is not None:
            self._fleet.close()
            self._fleet = None

    def _open(self, write: bool) -> EventStore:
        """The store: a reader never creates a database or its tables; a writer does."""
        if self._store is not None and (self._writable or not write):
            return self._store
        from stepledger.store.connect import open_store

        self.close()
        self._store = open_store(self.db, workdir=self.workdir, create=write)
        self._writable = write
        return self._store

    # --- runs -----------------------------------------------------------------------------------

    def prepare_run(
        self,
        file: Path,
        max_workers: int | None = None,
        run_id: str | None = None,
        merge_into: str | None = None,
        params: dict[str, Any] | None = None,
        on_workers: bool = False,
        takeover: bool = True,
        drive_queue: str | None = None,
    ) -> PreparedRun:
        """Load and check a workstream, decide the pool's size, and start the pool.

        The one place a run's worker count is decided. The pool starts before the store is opened,
        so the workers' interpreters boot while this process imports the store.
        """
        import queue

        from .execution.pool import WorkerPool
        from .session.prerun import check_max_workers, check_run_inputs, new_run_id
        from .workstream import check_tools_or_raise, load_with_warnings
        from .workstream.model import worker_limit

        check_max_workers(max_workers)
        _check_takeover(on_workers, takeover, drive_queue)
        if on_workers:
            self._fleet_db("run --on-workers")  # a PostgreSQL log, said before anything is made
        # On workers, the steps' ${env.NAME} values are each worker's (docs/workers.md): not needed here.
        workstream, said = load_with_warnings(file, params=params, env_on_workers=on_workers)
        workdir = Path(self.workdir).resolve()
        check_tools_or_raise(workstream, workdir)
        check_run_inputs(workstream, workdir, max_workers)
        run_id = run_id or new_run_id()
        workers = worker_limit(workstream, max_workers)
        if on_workers:
            from .fleet.workstream import check_fleet_run
            from .worktrees.isolation import check_isolation

            check_fleet_run(workstream, merge_into)  # before isolation's own checks, which do not apply
            check_isolation(workstream, workdir, run_id, merge_into)
            prepared = self._prepare_fleet_run(workstream, run_id, workers, max_workers, said, merge_into)
            prepared.takeover = takeover
            prepared.drive_queue = drive_queue
            return prepared
        # Started before isolation's check, whose imports (the event classes) take a while: the
        # workers' interpreters boot meanwhile. A run the check refuses stops them again.
        # A pool for python tasks readies their imports while it waits for its first attempt.
        python_tasks = any(step.tool == "python" for step in workstream.steps)
        pool = WorkerPool(workers, queue.SimpleQueue(), python_tasks=python_tasks, fork=True)
        pool.start()
        try:
            from .worktrees.isolation import check_isolation

            check_isolation(workstream, workdir, run_id, merge_into)
        except BaseException:
            pool.shutdown(kill_running=True)
            raise
        return PreparedRun(workstream, run_id, workers, max_workers, pool, tuple(said), merge_into)

    def run(self, prepared: PreparedRun, reporter: Reporter | None = None) -> RunReport:
        """Record the prepared run, drive it to its end, and stop its pool."""
        from .session.runs import start_run

        if prepared.on_workers:  # a view that shows which steps wait for a worker is told (docs/workers.md)
            prepared.pool.on_waiting = getattr(reporter, "fleet_waiting", None)  # type: ignore[union-attr]
        try:
            store = self._open(write=True)
            result = start_run(
                store,
                prepared.workstream,
                workdir=self.workdir,
                max_workers=prepared.max_workers,
                reporter=reporter,
                run_id=prepared.run_id,
                pool_factory=lambda size, results: _started_pool(prepared, size),
                merge_into=prepared.merge_into,
                on_workers=prepared.on_workers,
                takeover=prepared.takeover,
                drive_queue=prepared.drive_queue,
            )
            return self._report(result.run_id, result.outcome, result.run, reporter)
        finally:
            if prepared.on_workers:  # its last line is written: the rest of its copy in the database
                prepared.pool.close_run_log()  # type: ignore[union-attr]
            prepared.pool.shutdown(kill_running=True)

    def plan_resume(self, run_id: str) -> ResumePlan:
        """The run as its log says (RunNotFound if there is none), before it is resumed."""
        from .session.prerun import load_run, workstream_file_changed

        run_id = self.resolve_run(run_id)  # first, reading: a log that does not exist is not created
        run = load_run(self._open(write=True), run_id)
        return ResumePlan(run, workstream_file_changed(run))

    def resume(
        self,
        run_id: str,
        *,
        plan: ResumePlan | None = None,
        use_current_file: bool = False,
        max_workers: int | None = None,
        reporter: Reporter | None = None,
    ) -> RunReport:
        """Continue a run whose orchestrator stopped, from what its log says."""
        from .session.prerun import check_max_workers

        check_max_workers(max_workers)
        store = self._open(write=True)
        if plan is None:
            plan = self.plan_resume(run_id)
        made: list[FleetDispatcher] = []  # on workers: the pool of the resumed run
        pool_factory = (
            self._fleet_resume(plan.run, reporter, made) if plan.run.options.get("on_workers") else None
        )
        early = None
        if pool_factory is None and not use_current_file:
            from .session.resume_pool import start_early

            # Its workers boot while the session's modules are imported and the lease is taken.
            early = start_early(plan.run, max_workers)
        try:
            from .session.runs import resume_run

            result = resume_run(
                store,
                plan.run.run_id,
                use_current_file=use_current_file,
                max_workers=max_workers,
                reporter=reporter,
                run=plan.run,
                pool_factory=early.factory if early else pool_factory,
                built=(early.source, early.workstream) if early else None,
            )
        finally:
            if early:  # stopped by the run already, unless the resume was refused before it began
                early.pool.shutdown(kill_running=True)
            for dispatcher in made:  # the run's log has its last line: the rest of its copy
                dispatcher.close_run_log()
        return self._report(result.run_id, result.outcome, result.run, reporter)

    def _report(self, run_id: str, outcome: str, run: RunState, reporter: Reporter | None) -> RunReport:
        from stepledger.events import AcceptanceTestsRecorded, RunFinished
        from stepledger.store.outages import PatientStore

        from .read.measured import MeasuredTimes
        from .session.leases import lease_seconds

        # The reactor's own fold is the run's final state, and its run.finished event carries the
        # measured times: only the acceptance results are read back, not the whole log. The run
        # is over; a database that drops away just now is waited for as the reactor would.
        note = reporter.note if reporter is not None else (lambda line: None)
        patient = PatientStore(self._open(write=True), lease_seconds(), on_outage=note)
        wanted = [AcceptanceTestsRecorded.type_name, RunFinished.type_name]
        events = list(patient.find_events(run_id=run_id, types=wanted))
        finished = [e.payload for e in events if e.type == RunFinished.type_name]
        times = MeasuredTimes(finished[-1]["elapsed_s"], finished[-1]["sequential_s"]) if finished else None
        acceptance = [e for e in events if e.type != RunFinished.type_name]
        return RunReport(run_id, outcome, run, acceptance, times)

    def cancel(self, run_id: str | None, reason: str = "", by: str | None = None) -> str:
        """Ask the run's orchestrator to stop (or end the run now if none is alive); what happened.

        `run_id` as `resolve_run` takes it (None: the newest run). `by` names who asks (the web
        view's `web@HOST`); the login name of this process if None.
        """
        from .session.interventions import cancel_run

        chosen = self.resolve_run(run_id)  # first, reading: a log that does not exist is not created
        return cancel_run(self._open(write=True), chosen, reason=reason, by=by, fleet_db=self._postgres_url())

    def intervene(
        self, action: str, run_id: str, step_id: str, reason: str = "", by: str | None = None
    ) -> Intervention:
        """`retry`, `skip` or `mark-passed` a step, recorded with who (`by`, else this process's
        login name) and why; and what comes next."""
        from .session import interventions

        do = {
            "retry": interventions.retry_step,
            "skip": interventions.skip_step,
            "mark-passed": interventions.mark_step_passed,
        }
        run_id = self.resolve_run(run_id)  # first, reading: a log that does not exist is not created
        store = self._open(write=True)
        done = do[action](store, run_id, step_id, reason=reason, by=by)
        if done.woke_pid is not None:
            return Intervention(done.message, "woken")
        held = store.lease_holder(run_id)
        if held is not None and held.expires_at > time.time():
            # A live orchestrator on another host drives the run; resuming here would be refused.
            detail = f"run {run_id} is driven by the orchestrator pid {held.pid} on {held.host}"
            return Intervention(done.message, "elsewhere", detail)
        return Intervention(done.message, "resume")

    # --- looking at runs --------------------------------------------------------------------------

    def status(self, run_id: str | None = None) -> dict[str, Any]:
        """Each step of a run (default: the latest): state, attempt, duration, last error; for a run
        on workers, which running steps wait for a worker (`shown_state`)."""
        from .read.status import run_status

        return run_status(self._open(write=False), run_id, self._fleet_reader())

    def runs(
        self, limit: int | None = None, status: str | None = None, workstream: str | None = None
    ) -> list[dict[str, Any]]:
        """The runs in the log, newest first: the first `limit` with that `status` and `workstream`."""
        from .read.status import list_runs

        return list_runs(self._open(write=False), limit, status, workstream)

    def resolve_run(
        self, run: str | None = None, *, unfinished: bool = False, missing_ok: bool = False
    ) -> str:
        """The id of the run `run` names: a whole id, a unique prefix, `latest` or None (the newest
        run; with `unfinished`, the newest that was interrupted or whose orchestrator is gone).
        With `missing_ok` a name that matches no run is returned as it is (to follow a run to come)."""
        from .read.run_ids import LATEST, newest_run, resolve_run_id

        store = self._open(write=False)
        if unfinished and run in (None, LATEST):
            from .read.status import shown_status

            def resumable(run_id: str) -> bool:
                state = store.run_state(run_id)
                return state is not None and (
                    state.status == "interrupted" or shown_status(store, state)[1] == "gone"
                )

            return newest_run(store, resumable, "unfinished run (interrupted, or its orchestrator gone)")
        return resolve_run_id(store, run, missing_ok)

    def run_over(self, run_id: str) -> str | None:
        """None while the run is driven; else why following it can stop (its status, or that
        its orchestrator is gone)."""
        from .read.status import shown_status

        store = self._open(write=False)
        state = store.run_state(run_id)
        if state is None:
            return None
        shown, orchestrator = shown_status(store, state)
        # "waiting": a run driven by workers between two drivers; the fleet takes it over.
        return None if orchestrator in ("alive", "waiting") else shown

    def start_detached(
        self,
        file: Path,
        max_workers: int | None = None,
        params: dict[str, Any] | None = None,
        merge_into: str | None = None,
        on_workers: bool = False,
        takeover: bool = True,
        drive_queue: str | None = None,
    ) -> DetachedRun:
        """Start `stepledger run FILE` in the background (its own session, its output to a log
        file); return once its run is recorded (bad input is raised here, nothing recorded)."""
        from stepledger.store.errors import NoLog

        from .errors import StepledgerError
        from .session.detach import start_detached

        _check_takeover(on_workers, takeover, drive_queue)
        if on_workers:
            self._fleet_db("run --on-workers")  # a PostgreSQL log, said now rather than in the background

        def recorded(run_id: str) -> bool:
            try:
                return self.resolve_run(run_id) == run_id
            except (StepledgerError, NoLog):  # no such run, or no database yet: its process makes them
                return False

        run_id, pid, output = start_detached(
            file, max_workers, workdir=self.workdir, db=self.db, recorded=recorded, params=params,
            merge_into=merge_into, on_workers=on_workers, takeover=takeover, drive_queue=drive_queue,
        )  # fmt: skip
        return DetachedRun(run_id, pid, output)

    def log_files(self, run_id: str, step_id: str | None = None) -> list[Path]:
        """The run's orchestrator.log, or the logs of one step's attempts."""
        from .read.status import log_files

        return log_files(self._open(write=False), self.resolve_run(run_id), step_id)

    def step_logs(self, run_id: str | None, step_id: str | None = None) -> StepLogs:
        """The run's orchestrator.log, or one log per attempt of a step, to read as they grow: this
        machine's file, or for an attempt a worker ran elsewhere the copy it streams to the database.
        Close it (a `with` block) when done."""

        from .read.logs import step_logs

        chosen = self.resolve_run(run_id)
        fleet_db = self._postgres_url()
        return step_logs(self._open(write=False), chosen, step_id, lambda: self.run_over(chosen), fleet_db)

    def events(
        self,
        run: str | None = None,
        step: str | None = None,
        types: list[str] | None = None,
        since: int = 0,
        must_exist: bool = True,
    ) -> Iterator[RecordedEvent]:
        """The log's events after position `since`, filtered; an unknown `run` is an error if `must_exist`."""
        from stepledger.store.errors import StoreError

        store = self._open(write=False)
        if run is not None and must_exist:
            run = self.resolve_run(run)
        seen = False
        for event in store.find_events(run_id=run, step_id=step, types=types or [], after_position=since):
            seen = True
            yield event
        if must_exist and run is not None and not seen and run not in store.run_ids():
            raise StoreError(f"no run {run!r} in the log {getattr(store, 'url', '')}".rstrip())

    def head(self) -> int:
        """The log's last position (to follow from without missing or repeating an event)."""
        return self._open(write=False).last_position()

    def follow(
        self,
        after: int,
        run: str | None = None,
        step: str | None = None,
        types: list[str] | None = None,
        on_outage: Callable[[str], None] | None = None,
    ) -> Iterator[list[RecordedEvent]]:
        """New matching events as they are appended, in batches, for ever (the caller stops).

        It wakes on the store's notification of new events, and outlives a database restart: it
        waits up to FOLLOW_PATIENCE_S, saying so through `on_outage`.
        """
        from stepledger.store.outages import PatientStore

        tail = PatientStore(
            self._open(write=False), FOLLOW_PATIENCE_S, on_outage=on_outage or (lambda line: None)
        )
        last = after
        while True:
            if tail.wait_for_events(last, timeout=1.0):
                batch = list(tail.read_all(last))
                if batch:
                    last = batch[-1].position
                    yield [
                        e
                        for e in batch
                        if (run is None or e.run_id == run)
                        and (step is None or e.step_id == step)
                        and (not types or e.type in types)
                    ]

    def replay(self, run_id: str, at: str | None = None) -> dict[str, Any]:
        """The run rebuilt from its log alone, as it was at a position or a time (`at`)."""
        from .read.replay import parse_at, replay_run

        return replay_run(self._open(write=False), self.resolve_run(run_id), parse_at(at))

    def verify(self, run_id: str) -> list[Violation]:
        """Every broken invariant of the run's log (a damaged SQLite file raises first)."""
        from stepledger.store.connect import check_integrity

        from .read.replay import run_events, verify_run

        store = self._open(write=False)
        check_integrity(store)
        run_id = self.resolve_run(run_id)
        return verify_run(store, run_id, run_events(store, run_id))

    # --- audit ------------------------------------------------------------------------------------

    @staticmethod
    def audit_filter(
        workstream: str | None = None,
        run: str | None = None,
        step: str | None = None,
        since: str | None = None,
        until: str | None = None,
        last: str | None = None,
    ) -> AuditFilter:
        """The filter the audit questions take (BadAuditInput, one line, for a bad time or span)."""
        from .audit import make_filter

        return make_filter(workstream, run, step, since, until, last)

    def audit(self, question: str, *args: Any) -> Any:
        """Answer an audit question: failures, durations, retries, newest_retries, actions, why,
        timeline, timeline_html (the functions of engine/audit, on this log)."""
        from . import audit

        answer = getattr(audit, question) if question in _AUDIT_QUESTIONS else None
        if answer is None:
            raise ValueError(f"no audit question {question!r}")
        if question in _ABOUT_ONE_RUN and args:  # the run as people type it: a prefix, `latest`
            args = (self.resolve_run(args[0]), *args[1:])
        return answer(self._open(write=False), *args)

    # --- the database -----------------------------------------------------------------------------

    def db_upgrade(self, revision: str = "head") -> tuple[str | None, str | None]:
        """Migrate the schema to `revision`; the revisions before and after."""
        from stepledger.store import migrate
        from stepledger.store.connect import engine_for

        engine = engine_for(self.db, self.workdir)
        try:
            before = migrate.database_revision(engine)
            migrate.upgrade(engine, revision)
            return before, migrate.database_revision(engine)
        finally:
            engine.dispose()

    def db_current(self) -> dict[str, Any]:
        """The schema revision, the newest this stepledger knows, and how they compare."""
        from stepledger.store import migrate
        from stepledger.store.connect import engine_for, resolve_url, safe_url
        from stepledger.store.errors import NoLog

        try:
            engine = engine_for(self.db, self.workdir, create=False)  # a question creates no file
        except NoLog:
            revision = None
        else:
            try:
                revision = migrate.database_revision(engine)
            finally:
                engine.dispose()
        known = {r for r, _, _ in migrate.history()}
        heads = migrate.heads()
        if revision in heads:
            state = "head"
        elif revision is None:
            state = "empty"
        else:
            state = "behind" if revision in known else "newer than this stepledger"
        head = heads[0] if len(heads) == 1 else heads
        url = safe_url(resolve_url(self.db, self.workdir))
        return {"url": url, "revision": revision, "head": head, "state": state}

    @staticmethod
    def db_history() -> list[dict[str, Any]]:
        """The schema migrations, newest first."""
        from stepledger.store import migrate

        heads = set(migrate.heads())
        return [
            {"revision": revision, "down_revision": down, "message": message, "head": revision in heads}
            for revision, down, message in migrate.history()
        ]

    def db_rebuild(self) -> tuple[int, int]:
        """Rebuild the projections from the log (after an integrity check): (runs, last position)."""
        from stepledger.store.connect import check_integrity

        store = self._open(write=True)
        check_integrity(store)  # a projection folded from a damaged log would be wrong too
        return store.rebuild_projections(), store.last_position()

    # --- workstream files ---------------------------------------------------------------------------

    @staticmethod
    def validate(
        path: Path, strict: bool = False, params: dict[str, Any] | None = None
    ) -> tuple[Workstream | None, list[Problem]]:
        """Every problem of a workstream file (and the workstream, when it loads); `strict`: unknown
        fields are errors; `params`: the run parameters to check it with (`--param`)."""
        from .workstream import validate_problems

        return validate_problems(path, strict=strict, params=params)

    @staticmethod
    def load_workstream(path: Path, params: dict[str, Any] | None = None) -> Workstream:
        """A workstream file loaded and checked (WorkstreamInvalid lists every problem)."""
        from .workstream import load_workstream

        return load_workstream(path, params=params)

    @staticmethod
    def params_text(params: dict[str, Any]) -> str:
        """A run's parameters as `name=value` pairs, as `status` and `runs` show them."""
        from .read.status import params_text

        return params_text(params)

    @staticmethod
    def run_params(assignments: list[str], params_file: Path | None = None) -> dict[str, Any]:
        """The run parameters given by `--param NAME=VALUE` items over a `--params-file` (JSON or YAML
        object); UserInputError, one line, when either is malformed."""
        from .workstream.parameters import given_params

        return given_params(assignments, params_file)

    def plan(self, workstream: Workstream, max_workers: int | None = None, history: bool = True) -> Any:
        """Waves, critical path and expected times, with the durations earlier runs measured."""
        from .session.prerun import check_max_workers
        from .workstream import plan as make_plan

        check_max_workers(max_workers)
        measured = self._measured_durations(workstream.id) if history else {}
        return make_plan(workstream, max_workers=max_workers, durations=measured)

    def _measured_durations(self, workstream_id: str) -> dict[str, float]:
        import os

        from stepledger.store.connect import default_url
        from stepledger.store.errors import NoLog

        from .audit.durations import historical_durations

        if self.db is None and not os.path.exists(default_url(self.workdir).removeprefix("sqlite:///")):
            return {}
        try:
            store = self._open(write=False)
        except NoLog:
            return {}  # a database without a log yet: a plan without history
        return historical_durations(store, workstream_id)

    @staticmethod
    def graph(workstream: Workstream, fmt: str) -> str | bytes:
        """The dependency graph as Mermaid or DOT text, or SVG/PNG (Graphviz)."""
        from .workstream import render_graph

        return render_graph(workstream, fmt)

    @staticmethod
    def schema() -> dict[str, Any]:
        """The JSON Schema of workstream files."""
        from .workstream import json_schema

        return json_schema()

    @staticmethod
    def format_plan(result: Any) -> str:
        """A plan as the text `plan` prints."""
        from .workstream import format_plan

        return format_plan(result)

    # --- chaos: kill -9 a user's own workstream, again and again ------------------------------------

    def chaos_plan(self, file: Path, **options: Any) -> ChaosPlan:
        """Check a chaos run's options and plan its iterations (engine/chaos/campaign.prepare's
        options); the runs record in this object's --db if one was given. Nothing runs yet."""
        from stepledger.store.connect import safe_url

        from .chaos.campaign import prepare

        workdir = Path(options.pop("workdir", None) or self.workdir)
        measured: dict[str, float] = {}
        if options.get("shell_stub") and workdir.is_dir():
            # Earlier runs' durations, from the log the user's runs of this folder record in.
            with Stepledger(self.db, workdir) as history:
                measured = history._measured_durations(self.load_workstream(file).id)
        shown = safe_url(self.db) if self.db else None
        return prepare(file, workdir=workdir, db=self.db, db_shown=shown, measured=measured, **options)

    @staticmethod
    def chaos(plan: ChaosPlan, on_iteration: Callable[[IterationResult], None] | None = None) -> ChaosReport:
        """Run a planned chaos run; `on_iteration` hears of each iteration as it ends."""
        from .chaos.campaign import run_chaos

        return run_chaos(plan, on_iteration)

    # --- what a live view needs (`stepledger ui`) ---------------------------------------------------

    def run_summaries(self, flt: AuditFilter | None = None) -> list[dict[str, Any]]:
        """One row per run, oldest first: workstream, status, start, elapsed and (once it finished)
        its step counts — the run_summaries view, one query however many runs the log has."""
        from .audit import run_summaries_rows
        from .audit.queries import NO_FILTER

        return run_summaries_rows(self._open(write=False), flt or NO_FILTER)

    def run_summary(self, run_id: str) -> dict[str, Any]:
        """The run_summaries row of one run (RunNotFound if the log has none)."""
        from .audit import run_summary

        return run_summary(self._open(write=False), run_id)

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """True once the log has an event after position `after`; False if none came in `timeout` s.

        A front end that pushes new events waits here, one waiter for all its viewers, instead of
        each viewer asking the database again and again."""
        return self._open(write=False).wait_for_events(after, timeout)

    def event_lines(self, run_id: str, since: int = 0, newest: int | None = None) -> list[dict[str, Any]]:
        """The run's events after `since` in words (those worth a line), oldest first; with `newest`,
        only the last that many: position, time, type, step and text."""
        from .read.describe import describe

        store = self._open(write=False)
        run = store.run_state(run_id)
        if run is None:
            from .errors import RunNotFound

            raise RunNotFound(f"no run {run_id!r} in this log; `stepledger runs` lists the runs")
        lines = []
        for event in store.find_events(run_id=run_id, after_position=since):
            text = describe(event, run)
            if text is not None:
                lines.append({"position": event.position, "at": event.recorded_at, "type": event.type,
                              "step_id": event.step_id, "text": text})  # fmt: skip
        return lines[-newest:] if newest else lines

    def step_requirements(self, run_id: str) -> dict[str, list[str]]:
        """Each step of the run and the steps it waits for, as the run recorded them (for_each
        expansions included, once recorded)."""
        from .read.expansions import recorded_expansions, steps_and_requirements
        from .read.status import run_state

        store = self._open(write=False)
        run = run_state(store, run_id)
        # One pass over the recorded steps (audit.why.requirements looks one step up at a time).
        return steps_and_requirements(run.workstream, recorded_expansions(store, run.run_id))[1]

    # --- git worktrees (execution.isolation; docs/worktrees.md) ----------------------------------

    def worktrees(self, run: str | None = None) -> list[dict[str, Any]]:
        """The worktrees runs left in the repository of the working folder (of `run` only, if given).

        Each: run, step (its id when the log knows the run, else the folder's name; empty for the
        integration worktree), the step's state in the log ("" if unknown), path, branch, head.
        """
        from .worktrees.inventory import found_worktrees, repository_of

        top = repository_of(self.workdir)
        run_id = self.resolve_run(run) if run is not None else None
        rows = []
        for kept in found_worktrees(top, run_id):
            step_id, state = self._worktree_step(kept.run_id, kept.name)
            rows.append({"run_id": kept.run_id, "step_id": step_id, "state": state, "path": kept.path,
                         "branch": kept.branch, "head": kept.head})  # fmt: skip
        return rows

    def prune_worktrees(self, run: str | None = None) -> list[dict[str, Any]]:
        """Remove the worktrees and step branches of `run`, or of every run no orchestrator drives.

        A run being driven is refused when named and left alone otherwise; integration branches
        are kept. Returns the removed worktrees, as `worktrees` lists them.
        """
        from .errors import UserInputError
        from .worktrees.inventory import found_worktrees, prune, repository_of

        top = repository_of(self.workdir)
        run_id = self.resolve_run(run) if run is not None else None
        if run_id is not None and self._driven(run_id):
            raise UserInputError(
                f"run {run_id} is being driven: wait for it to end or `stepledger cancel {run_id}` first"
            )
        rows = [w for w in self.worktrees(run_id) if run_id is not None or not self._driven(w["run_id"])]
        chosen = {row["path"] for row in rows}
        kept = [w for w in found_worktrees(top, run_id) if w.path in chosen]
        prune(top, kept, {run_id} if run_id else {w.run_id for w in kept})
        return rows

    def _worktree_step(self, run_id: str, name: str) -> tuple[str, str]:
        """(step id, state) of the step whose worktree folder is `name`, from the log if it can say."""
        from .errors import StepledgerError
        from .worktrees.names import RUN_WORKTREE, step_slug

        if name == RUN_WORKTREE:
            return "", ""
        try:
            state = self._open(write=False).run_state(run_id)
        except StepledgerError:
            state = None  # no log here: the folder's name is all there is
        for sid, step in state.steps.items() if state else ():
            if step_slug(sid) == name:
                return sid, step.state
        return name, ""

    def _driven(self, run_id: str) -> bool:
        """Whether a live orchestrator drives `run_id` now."""
        from .errors import StepledgerError
        from .read.status import shown_status

        try:
            store = self._open(write=False)
            state = store.run_state(run_id)
        except StepledgerError:
            return False
        return state is not None and shown_status(store, state)[1] == "alive"

    # --- workers on many machines (docs/workers.md) ---------------------------------------------

    def _prepare_fleet_run(
        self,
        workstream: Workstream,
        run_id: str,
        workers: int,
        max_workers: int | None,
        said: Any,
        merge_into: str | None,
    ) -> PreparedRun:
        """A prepared run whose attempts go to `stepledger worker`s instead of a local pool."""
        import queue

        from .fleet.dispatcher import FleetDispatcher, run_log_of
        from .fleet.settings import is_postgres
        from .fleet.workstream import step_queues

        db = self._fleet_db("run --on-workers")
        assert is_postgres(db)
        # Its orchestrator.log is streamed into the database from the start (close_run_log in `run`).
        run_log = run_log_of(self.workdir, run_id)
        pool = FleetDispatcher(db, workers, queue.SimpleQueue(), step_queues(workstream), run_log)
        pool.start()
        return PreparedRun(workstream, run_id, workers, max_workers, pool, tuple(said), merge_into, True)

    def _fleet_resume(
        self, run: RunState, reporter: Reporter | None, made: list[FleetDispatcher]
    ) -> Callable[[int, Any], FleetDispatcher]:
        """The pool of a resumed run on the fleet, made once the resume holds the run's lease
        (added to `made`, whose run log the caller closes once the run is over)."""
        from .fleet.dispatcher import FleetDispatcher, run_log_of
        from .fleet.takeover import await_running_attempts, settle_left_attempts
        from .fleet.workstream import recorded_step_queues
        from .paths import hostname
        from .session.liveness import is_stepledger
        from .session.runs import load_run

        db = self._fleet_db("resume of a run on workers")
        note = reporter.note if reporter is not None else (lambda line: None)
        queues = recorded_step_queues(run.workstream)
        held = self._open(write=True).lease_holder(run.run_id)
        if (
            held is None
            or held.expires_at < time.time()
            or (held.host == hostname() and not is_stepledger(held.pid))
        ):
            await_running_attempts(db, run, note)  # nobody drives the run: wait for its attempts first

        def pool(size: int, results: Any) -> FleetDispatcher:
            # Under the lease, so the log read here is final: the verdicts of the attempts the old
            # driver left become their result files before the reactor looks for them.
            settle_left_attempts(db, load_run(self._open(write=True), run.run_id), note)
            dispatcher = FleetDispatcher(db, size, results, queues, run_log_of(run.workdir, run.run_id))
            dispatcher.on_waiting = getattr(reporter, "fleet_waiting", None)
            made.append(dispatcher)
            return dispatcher

        return pool

    def submit(
        self,
        file: Path,
        max_workers: int | None = None,
        params: dict[str, Any] | None = None,
        queue: str | None = None,
    ) -> SubmittedRun:
        """Record a run of `file` for the fleet to drive and return at once (docs/workers.md):
        checked as `run --on-workers` checks it; a worker serving `queue` drives it."""
        from .fleet.submit import submit_run
        from .workstream import check_tools_or_raise, load_with_warnings

        db = self._fleet_db("submit")
        workstream, said = load_with_warnings(file, params=params, env_on_workers=True)
        workdir = Path(self.workdir).resolve()
        check_tools_or_raise(workstream, workdir)
        run_id = submit_run(self._open(write=True), db, workstream, workdir, max_workers, queue)
        return SubmittedRun(run_id, tuple(said))

    def submit_resume(
        self, run_id: str | None, *, use_current_file: bool = False, max_workers: int | None = None
    ) -> HandedRun:
        """Hand a stopped run of the fleet back to it (`resume --submit`, docs/workers.md): a worker
        serving its queue resumes it; return at once. RunInUse while a live orchestrator drives it.
        `use_current_file` and `max_workers` belong to a resume driven here: refused, one line."""
        from .errors import UserInputError
        from .fleet.submit import hand_to_fleet

        if use_current_file or max_workers is not None:
            given = "--use-current-file" if use_current_file else "--max-workers"
            raise UserInputError(f"{given} goes with a resume driven here, not with --submit: drop one")
        db = self._fleet_db("resume --submit")
        chosen = self.resolve_run(run_id, unfinished=True)
        queue, enqueued = hand_to_fleet(self._open(write=True), db, chosen)
        return HandedRun(chosen, queue, enqueued)

    def serve_worker(
        self, concurrency: int, queues: list[str], grace: float | None = None, drive: int = 4
    ) -> None:
        """Be a `stepledger worker`: run the fleet's attempts in this work directory, and drive up
        to `drive` runs submitted to the fleet, until SIGTERM."""
        from .errors import UserInputError
        from .fleet.worker import FleetWorker

        if concurrency < 1:
            raise UserInputError(f"--concurrency {concurrency}: give 1 or more")
        if grace is not None and grace < 0:
            raise UserInputError(f"--grace {grace:g}: give 0 or more seconds")
        if drive < 0:
            raise UserInputError(f"--drive {drive}: give 0 or more")
        if not Path(self.workdir).is_dir():
            raise UserInputError(f"--workdir {self.workdir}: no such folder; create it or give another")
        db = self._fleet_db("worker")
        FleetWorker(db, self.workdir, concurrency, queues, grace, drive).serve()

    def fleet_attempts(self, run_id: str) -> list[dict[str, Any]]:
        """The attempts of a run on the fleet: where each ran (host, worker) and how it ended, and
        those still queued for a worker (with their queue)."""
        from .fleet.reading import fleet_attempts

        return fleet_attempts(self._fleet_db("fleet attempts"), self.resolve_run(run_id))

    def fleet_log(self, run_id: str, step_id: str, attempt: int | None = None) -> tuple[int, bytes]:
        """(attempt, its log as the database keeps it: its end, streamed while it runs) of a step of
        a run on workers, from any machine: the given attempt or the latest one a worker took
        (UserInputError if there is none)."""
        from .errors import UserInputError
        from .fleet.reading import fleet_log

        chosen = self.resolve_run(run_id)
        found = fleet_log(self._fleet_db("fleet log"), chosen, step_id, attempt)
        if found is None:
            which = f"attempt {attempt} of step {step_id!r}" if attempt else f"step {step_id!r}"
            raise UserInputError(
                f"no log of {which} of run {chosen} in the database: no worker has taken it yet, "
                "or the run is not on workers (`stepledger logs` shows local runs)"
            )
        return found

    def fleet_log_part(
        self, run_id: str, step_id: str, attempt: int, position: int | None, limit: int
    ) -> LogPart | None:
        """Up to `limit` bytes of the database's copy of an attempt's log (a run on workers), from
        `position` in the whole log or (None) its end; None if the database has none of it."""
        fleet = self._fleet_reader()
        return fleet.log_part((run_id, step_id, attempt), position, limit) if fleet else None

    def fleet_waiting(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Step id -> {attempt, queue, served} of the run's attempts whose job no worker has taken
        yet (none unless the log is in PostgreSQL)."""
        fleet = self._fleet_reader()
        return fleet.waiting_attempts(run_id) if fleet else {}

    def fleet_news(self) -> FleetLogs | None:
        """A connection that hears when an attempt's log grew or ended on any worker, by run id (its
        `news(timeout)`); None unless the log is in PostgreSQL. The caller closes it."""
        db = self._postgres_url()
        if db is None:
            return None
        from .fleet.reading import FleetLogs

        return FleetLogs(db)

    def _fleet_reader(self) -> FleetReader | None:
        """The kept connection for reading the fleet (opened on first use); None unless the log is
        in PostgreSQL, where a fleet's tables are."""
        if self._fleet is None:
            db = self._postgres_url()
            if db is not None:
                from .fleet.reading import FleetReader

                self._fleet = FleetReader(db)
        return self._fleet

    def _postgres_url(self) -> str | None:
        """The log's URL if it is a PostgreSQL database (where a fleet's tables are), else None."""
        from stepledger.store.connect import resolve_url

        from .fleet.settings import is_postgres

        db = resolve_url(self.db, self.workdir)
        return db if is_postgres(db) else None

    def _fleet_db(self, command: str) -> str:
        """The PostgreSQL URL a fleet shares; UserInputError for any other log."""
        from .errors import UserInputError

        db = self._postgres_url()
        if db is None:
            raise UserInputError(
                f"`{command}` needs the log in PostgreSQL, which every machine of the fleet reaches: "
                "give --db postgresql+psycopg://USER@HOST/DB (or set STEPLEDGER_DB)"
            )
        return db


_ABOUT_ONE_RUN = frozenset({"why", "timeline", "timeline_html"})  # their first argument is a run
_AUDIT_QUESTIONS = frozenset(
    {"failures", "durations", "retries", "newest_retries", "actions", "why", "timeline", "timeline_html"}
)


def _check_takeover(on_workers: bool, takeover: bool, drive_queue: str | None = None) -> None:
    """`--no-takeover` and `--queue` mean something only with `--on-workers`, and `--queue` (whose
    workers take the run over) not with `--no-takeover`: one line, exit 2, otherwise."""
    from .errors import UserInputError

    if not takeover and not on_workers:
        raise UserInputError("--no-takeover: give it with --on-workers (only a run on workers is taken over)")
    if drive_queue is None:
        return
    if not on_workers or not takeover:
        raise UserInputError(
            "--queue: give it with --on-workers and without --no-takeover (it names the queue whose"
            " workers take the run over if this process dies)"
        )
    if not drive_queue.strip():
        raise UserInputError(
            "--queue: give a queue name (workers serve the queues given to them with --queue)"
        )


def _started_pool(prepared: PreparedRun, size: int) -> WorkerPool | FleetDispatcher:
    # The reactor sizes its capacity with the same rule (model.worker_limit) from the same inputs;
    # a disagreement would be a bug that silently wastes or overbooks workers.
    if size != prepared.workers:
        raise RuntimeError(f"the reactor wants {size} workers, the prepared pool has {prepared.workers}")
    return prepared.pool


def __getattr__(name: str) -> Any:
    # Types a front end names (to catch or to annotate), resolved only when asked for: importing the
    # workstream package costs more than a short command should pay.
    if name in ("Problem", "WorkstreamInvalid"):
        from . import workstream

        return getattr(workstream, name)
    if name == "Workstream":
        from .workstream.model import Workstream

        return Workstream
    raise AttributeError(name)
