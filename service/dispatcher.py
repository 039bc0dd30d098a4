"""The dispatcher: runs queued jobs on Ray and records what they report.

One background thread per controller process. Each tick it records the events of the jobs it
runs (``workers.jobs.JobActor.poll``), stops the ones users cancelled, renews its leases,
takes over jobs whose controller went away, and claims queued jobs up to
NAS_MAX_CONCURRENT_JOBS. Each attempt of a job is one detached, named Ray actor:

- a controller that stops hands its jobs back (``leases.release``); the next one finds the
  actor by name and keeps watching it when it still runs (a Ray cluster outlives its
  controllers), or queues the job again to resume from its last checkpoint when the Ray work
  is gone (a local Ray ends with the process that started it);
- a controller that dies stops renewing its leases; after NAS_JOB_LEASE_S another takes over;
- a job whose attempts keep being interrupted fails after NAS_JOB_MAX_ATTEMPTS.

Ray is imported and connected on first need, so an API process with an empty queue never
starts it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.db import database_fault
from service.models import TERMINAL_STATES
from service.settings import Settings
from service.store import devices, leases
from service.store.leases import OwnedJob
from service.store.progress import record_events
from workers.cluster import connect_ray
from workers.events import PollResult
from workers.jobs import RAY_NAMESPACE, STAGES, job_actor_class, uses_ray_train
from workers.spec import JobRequest
from workers.storage import ArtifactStore

log = logging.getLogger("service.dispatcher")

TICK_S = 0.5
"""Longest wait between ticks; cancel and submit wake the thread at once."""
POLL_WAIT_S = 0.5
"""How long one tick waits for the runners' answers."""
ORPHAN_SCAN_S = 5.0
"""How often to look for jobs whose controller went away."""
ERROR_BACKOFF_S = 5.0
"""Pause after a tick failed (database or Ray unreachable)."""


def _why(exc: SQLAlchemyError) -> str:
    """The database's fault in words, or the driver's first line (a table not migrated yet)."""
    fault = database_fault(exc)
    if fault is not None:
        return str(fault)
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}"


def connect_cluster(settings: Settings) -> bool:
    """Join NAS_RAY_ADDRESS, or start the local Ray this service runs on (no-op when this
    process is connected); whether this call started or joined it."""
    return connect_ray(
        settings.ray_address,
        num_cpus=settings.ray_num_cpus,
        namespace=RAY_NAMESPACE,
        dashboard=settings.ray_dashboard,
    )


@dataclass
class _Attempt:
    """A job attempt this controller watches."""

    job_id: int
    attempt: int
    actor: Any
    seq: int
    poll: Any = None


def job_request(owned: OwnedJob, settings: Settings) -> JobRequest:
    """The runner's request for a claimed job: its stored spec, where its files go, and the
    stages an earlier attempt finished. A spec stored before a field existed gets its
    defaults; a ``ValidationError`` or ``KeyError`` for one that no longer fits."""
    return JobRequest(
        job_id=owned.id,
        attempt=owned.attempt,
        artifact_dir=settings.artifact_dir.resolve(),
        data_root=settings.data_root.resolve(),
        completed_stages=owned.completed_stages,
        store_id=ArtifactStore(settings.artifact_dir).ensure_marker(),
        **{
            key: owned.spec[key]
            for key in ("space", "preset", "dataset", "training", "search", "devices")
        },
        num_workers=owned.spec["num_workers"],
        placement=owned.spec.get("placement", {}),
        health=owned.spec.get("health", {}),  # specs stored before health gates
        finetune=owned.spec.get("finetune", {}),  # before the finetuning stage; null skips it
    )


class Dispatcher:
    """Claims and runs jobs; thread-safe ``wake`` and ``stop``."""

    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self._sessions = session_factory
        host = socket.gethostname()[:64]
        self.name = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running: dict[int, _Attempt] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._ray: Any = None
        self._owns_ray = False
        self._next_heartbeat = 0.0
        self._next_orphan_scan = 0.0
        self._database_problem: str | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nas-dispatcher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tick now (a job was submitted or cancelled)."""
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the current tick, record what the runners reported, hand the jobs back."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        log.info("dispatcher %s started", self.name)
        while not self._stopping.is_set():
            pause = ERROR_BACKOFF_S
            try:
                self._tick()
                pause = TICK_S
                if self._database_problem is not None:
                    log.info("dispatcher: database usable again")
                    self._database_problem = None
            except SQLAlchemyError as exc:  # down, locked, corrupt, not migrated: no traceback
                self._database_failed(exc)
            except Exception:
                log.exception("dispatcher tick failed; retrying in %.0f s", ERROR_BACKOFF_S)
            self._wake.wait(pause)
            self._wake.clear()
        try:
            self._shutdown()
        except SQLAlchemyError as exc:
            log.warning(
                "dispatcher %s could not hand its jobs back: %s; another controller takes them "
                "over when their leases expire",
                self.name,
                _why(exc),
            )
        except Exception:
            log.exception("dispatcher %s did not stop cleanly", self.name)

    def _database_failed(self, exc: SQLAlchemyError) -> None:
        """One line when the database fails, another when the reason changes; not one a tick."""
        problem = _why(exc)
        if problem != self._database_problem:
            log.warning(
                "dispatcher: database unavailable: %s; retrying every %.0f s",
                problem,
                ERROR_BACKOFF_S,
            )
        self._database_problem = problem

    # --- Ray -----------------------------------------------------------------------------

    def _connect_ray(self) -> None:
        if self._ray is None:
            self._owns_ray = connect_cluster(self.settings)
            import ray

            self._ray = ray

    def _find_actor(self, name: str | None) -> Any:
        if name is None:
            return None
        try:
            return self._ray.get_actor(name, namespace=RAY_NAMESPACE)
        except ValueError:  # no live actor of that name
            return None

    def _kill(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # already gone
            log.debug("actor already gone", exc_info=True)

    # --- one tick ------------------------------------------------------------------------

    def _tick(self) -> None:
        if self._running:
            self._poll_running()
            self._stop_cancelled()
        now = time.monotonic()
        if self._running and now >= self._next_heartbeat:
            with self._sessions() as session:
                leases.heartbeat(session, self.name)
            self._next_heartbeat = now + self.settings.job_lease_s / 3
        if len(self._running) >= self.settings.max_concurrent_jobs and now < self._next_orphan_scan:
            return
        with self._sessions() as session:
            if not leases.has_work(session, self.settings.job_lease_s):
                return
        self._connect_ray()
        if now >= self._next_orphan_scan:
            self._take_over_orphans()
            self._next_orphan_scan = now + ORPHAN_SCAN_S
        self._start_queued()

    def _poll_running(self) -> None:
        ray = self._ray
        for attempt in self._running.values():
            if attempt.poll is None:
                attempt.poll = attempt.actor.poll.remote(attempt.seq)
        polls = [a.poll for a in self._running.values()]
        ready, _ = ray.wait(polls, num_returns=len(polls), timeout=POLL_WAIT_S)
        ready_ids = {ref.hex() for ref in ready}
        for attempt in list(self._running.values()):
            if attempt.poll.hex() not in ready_ids:
                continue
            ref, attempt.poll = attempt.poll, None
            try:
                result = PollResult.model_validate(ray.get(ref))
            except ray.exceptions.ActorUnavailableError:
                continue  # restarting or unreachable for a moment: ask again next tick
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError):
                self._interrupted(attempt, "the job's Ray actor died (worker or node lost)")
                continue
            self._record(attempt, result)

    def _record(self, attempt: _Attempt, result: PollResult) -> None:
        if result.events:
            with self._sessions() as session:
                seq = record_events(
                    session,
                    attempt.job_id,
                    self.name,
                    attempt.attempt,
                    result.events,
                    artifact_dir=self.settings.artifact_dir,
                )
            if seq is None:
                self._forget(attempt)
                return
            attempt.seq = seq
        if result.outcome is not None:
            with self._sessions() as session:
                leases.finish(
                    session,
                    attempt.job_id,
                    self.name,
                    attempt.attempt,
                    succeeded=result.outcome.state == "succeeded",
                    error=result.outcome.error,
                    stage=result.outcome.stage,
                )
            self._kill(attempt.actor)
            del self._running[attempt.job_id]

    def _forget(self, attempt: _Attempt) -> None:
        """The job is not ours any more: stop its work if it ended (cancelled, deleted);
        leave it to its new owner otherwise."""
        self._running.pop(attempt.job_id, None)
        with self._sessions() as session:
            state = leases.state_of(session, attempt.job_id)
        if state is None or state in TERMINAL_STATES:
            self._kill(attempt.actor)

    def _interrupted(self, attempt: _Attempt, reason: str) -> None:
        self._running.pop(attempt.job_id, None)
        self._kill(attempt.actor)
        with self._sessions() as session:
            leases.interrupted(
                session,
                attempt.job_id,
                self.name,
                reason=reason,
                max_attempts=self.settings.job_max_attempts,
            )

    def _stop_cancelled(self) -> None:
        with self._sessions() as session:
            cancelled = leases.cancel_requests(session, self.name)
        for job_id in cancelled:
            attempt = self._running.pop(job_id, None)
            if attempt is not None:
                self._kill(attempt.actor)
            with self._sessions() as session:
                leases.mark_cancelled(session, job_id, self.name)
            log.info("job %s cancelled", job_id)

    def _take_over_orphans(self) -> None:
        lease_s = self.settings.job_lease_s
        with self._sessions() as session:
            orphans = leases.orphans(session, lease_s)
        for job_id in orphans:
            with self._sessions() as session:
                owned = leases.take_over(session, job_id, self.name, lease_s)
            if owned is None:
                continue  # another controller was quicker
            actor = self._find_actor(owned.ray_actor)
            if owned.cancel_requested:
                if actor is not None:
                    self._kill(actor)
                with self._sessions() as session:
                    leases.mark_cancelled(session, job_id, self.name)
            elif actor is not None:
                self._running[job_id] = _Attempt(job_id, owned.attempt, actor, owned.event_seq)
                with self._sessions() as session:
                    leases.note(
                        session,
                        job_id,
                        owned.attempt,
                        f"controller {self.name} took the job over; its Ray work kept running",
                    )
            else:
                with self._sessions() as session:
                    leases.interrupted(
                        session,
                        job_id,
                        self.name,
                        reason="its Ray work ended with the previous controller",
                        max_attempts=self.settings.job_max_attempts,
                    )

    def _start_queued(self) -> None:
        while len(self._running) < self.settings.max_concurrent_jobs:
            with self._sessions() as session:
                owned = leases.claim_next(session, self.name, first_stage=STAGES[0].name)
            if owned is None:
                return
            self._launch(owned)

    def _launch(self, owned: OwnedJob) -> None:
        try:
            request = job_request(owned, self.settings)
            self._write_tables(request)
            # One CPU for the actor when it trains itself; none when it only drives Ray
            # Train workers (which each take their own), so N workers fit on N CPUs.
            actor = job_actor_class().options(
                name=owned.ray_actor,
                namespace=RAY_NAMESPACE,
                lifetime="detached",
                num_cpus=0 if uses_ray_train(request) else 1,
                max_restarts=0,
            )
            handle = actor.remote(request.model_dump(mode="json"))
            handle.start.remote()
        except (ValidationError, KeyError, ValueError, OSError) as exc:
            with self._sessions() as session:
                leases.finish(
                    session,
                    owned.id,
                    self.name,
                    owned.attempt,
                    succeeded=False,
                    error=f"could not start the job: {exc}",
                )
            return
        self._running[owned.id] = _Attempt(owned.id, owned.attempt, handle, seq=0)
        log.info(
            "job %s attempt %s started as Ray actor %s", owned.id, owned.attempt, owned.ray_actor
        )

    def _write_tables(self, request: JobRequest) -> None:
        """Copy each registered device's latest table for the job's space and preset into
        ``job_dir/tables/<device>.json``: the runner reads tables there, never the database."""
        from nas.hardware import BUILTIN_NAMES, write_table
        from workers.tables import JOB_TABLES_DIR

        registered = [d for d in request.devices if d not in BUILTIN_NAMES]
        if not registered:
            return
        with self._sessions() as session:
            tables = {
                name: devices.latest_table(session, name, request.space, request.preset)
                for name in registered
            }
        for name, table in tables.items():
            if table is None:
                raise ValueError(
                    f"devices: {name!r} has no latency table for {request.space}/"
                    f"{request.preset} any more"
                )
            write_table(table, request.job_dir / JOB_TABLES_DIR / f"{name}.json")

    def _shutdown(self) -> None:
        if self._running:
            try:
                self._poll_running()  # record what was reported up to now
            except Exception:
                log.exception("last poll before stopping failed")
            with self._sessions() as session:
                leases.release(session, self.name, list(self._running))
            self._running.clear()
        if self._owns_ray:
            self._ray.shutdown()
        log.info("dispatcher %s stopped", self.name)
