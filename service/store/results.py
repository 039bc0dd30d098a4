"""Storing what a job's search produced (``workers.results.JobResults``) in its rows.

Idempotent: a subnet is one row per (job, arch_id), updated when it comes again (a resumed
attempt, a repeated poll, the finetuning stage's rewrite of the file with ``finetuned`` set),
its latencies one row per device; a job's fronts are replaced as a whole. A measurement is
never forgotten: a file without one (or without ``finetuned``) keeps the stored figure. Runs
inside the caller's transaction (the controller records the results together with the event
that announced them) and commits nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import ConflictError
from service.models import ParetoFront, ParetoMember, Subnet, SubnetLatency
from service.store.jobs import get_job
from service.store.results_read import job_budget, measured_subnets
from workers.results import FinetunedResult, JobResults, measured_front


def set_finetuned(row: Subnet, finetuned: FinetunedResult) -> None:
    """The row's fine-tuned figures from a fine-tuning record: one mapping for the
    finetuning stage's results and for a fine-tuning asked for on request."""
    row.finetuned_accuracy = finetuned.accuracy
    row.finetune = finetuned.model_dump(mode="json", exclude={"accuracy"})


def _upsert_subnets(session: Session, job_id: int, results: JobResults) -> dict[str, Subnet]:
    existing = {
        s.arch_id: s for s in session.scalars(select(Subnet).where(Subnet.job_id == job_id)).all()
    }
    rows: dict[str, Subnet] = {}
    for result in results.subnets:
        row = existing.get(result.arch_id)
        if row is None:
            row = Subnet(job_id=job_id, arch_id=result.arch_id)
            session.add(row)
        row.arch, row.resolution = result.arch, result.resolution
        row.macs, row.params = result.macs, result.params
        row.predicted_accuracy = result.predicted_accuracy
        if result.measured_accuracy is not None:  # never forget a measurement
            row.measured_accuracy = result.measured_accuracy
        if result.finetuned is not None:  # the finetuning stage's rewrite of the file
            set_finetuned(row, result.finetuned)
        rows[result.arch_id] = row
    session.flush()
    return rows


def _upsert_latencies(session: Session, results: JobResults, rows: dict[str, Subnet]) -> None:
    ids = [row.id for row in rows.values()]
    existing = {
        (lat.subnet_id, lat.device): lat
        for lat in session.scalars(select(SubnetLatency).where(SubnetLatency.subnet_id.in_(ids)))
    }
    for result in results.subnets:
        subnet_id = rows[result.arch_id].id
        for device, latency in result.latencies.items():
            row = existing.get((subnet_id, device))
            if row is None:
                row = SubnetLatency(subnet_id=subnet_id, device=device)
                session.add(row)
            row.predicted_ms = latency.predicted_ms
            if latency.measured_ms is not None:
                row.measured_ms = latency.measured_ms
    session.flush()


def _replace_fronts(
    session: Session, job_id: int, results: JobResults, ids: dict[str, int]
) -> None:
    old = select(ParetoFront.id).where(ParetoFront.job_id == job_id)
    session.execute(delete(ParetoMember).where(ParetoMember.front_id.in_(old)))
    session.execute(delete(ParetoFront).where(ParetoFront.job_id == job_id))
    for result in results.fronts:
        front = ParetoFront(
            job_id=job_id,
            device=result.device,
            objectives=list(result.objectives),
            hypervolume=result.hypervolume,
        )
        session.add(front)
        session.flush()
        _set_members(session, front.id, [ids[arch_id] for arch_id in result.members])
    session.flush()


def _set_members(session: Session, front_id: int, subnet_ids: Sequence[int]) -> None:
    session.execute(delete(ParetoMember).where(ParetoMember.front_id == front_id))
    session.add_all(
        ParetoMember(front_id=front_id, subnet_id=subnet_id, position=position)
        for position, subnet_id in enumerate(subnet_ids)
    )


def ingest_results(session: Session, job_id: int, results: JobResults) -> dict[str, int]:
    """Write ``results`` for ``job_id`` (subnets, their latencies, the fronts and their
    members); returns arch_id -> subnets.id. The caller commits."""
    rows = _upsert_subnets(session, job_id, results)
    _upsert_latencies(session, results, rows)
    ids = {arch_id: row.id for arch_id, row in rows.items()}
    _replace_fronts(session, job_id, results, ids)
    return ids


def refresh_fronts(session: Session, job_id: int) -> None:
    """Recompute the members of each of the job's fronts from all its measured subnets
    (``workers.results.measured_front``), and commit: a subnet measured after the search (a
    specialisation) may join a front or beat one of its members."""
    for _ in range(2):  # the second pass after a concurrent refresh of the same fronts
        job = get_job(session, job_id)
        subnets = measured_subnets(session, job_id)
        fronts = session.scalars(select(ParetoFront).where(ParetoFront.job_id == job_id)).all()
        for front in fronts:
            members = measured_front(subnets, front.device, job_budget(job, front.device))
            _set_members(session, front.id, [s.id for s in members])
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return
    raise ConflictError(f"the fronts of job {job_id} changed meanwhile; retry")
