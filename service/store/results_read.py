"""What the result endpoints read (fronts, subnets, artifacts), and the two things the API
itself adds to a finished job's results: a specialised subnet and an on-demand export.

The search stages' own results come in through ``service.store.results.ingest_results``;
everything here works on the same tables, so an added subnet is read back like any other.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, bindparam, cast, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.api.schemas.results import (
    FORMAT_OF_KIND,
    ArtifactPublic,
    FinetunePublic,
    FrontMembershipPublic,
    FrontPublic,
    LatencyPublic,
    SortKey,
    SortOrder,
    SubnetDetailPublic,
    SubnetPublic,
    SubnetRecord,
    weights_of_kind,
)
from service.errors import ConflictError, InvalidFieldError, NotFoundError
from service.models import (
    Artifact,
    Job,
    ParetoFront,
    ParetoMember,
    Subnet,
    SubnetLatency,
)
from service.store.jobs import get_job
from workers.results import best_member

#: Fronts exist once the searching stage has run; before that a missing one is no 404.
_BEFORE_FRONTS = ("queued", "training", "building_predictor", "searching")


@dataclass(frozen=True)
class SubnetQuery:
    """Filters, order and page of ``GET /jobs/{id}/subnets`` (validated by the route)."""

    sort: SortKey = "accuracy"
    order: SortOrder | None = None  # None: the natural one (accuracy desc, the others asc)
    device: str | None = None
    min_accuracy: float | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None
    on_front: bool | None = None
    limit: int = 50
    offset: int = 0


def _accuracy() -> ColumnElement[Any]:
    """Measured where it was, predicted otherwise: what a person means by "accuracy"."""
    return func.coalesce(Subnet.measured_accuracy, Subnet.predicted_accuracy)


def _latencies(session: Session, subnet_ids: Sequence[int]) -> dict[int, dict[str, LatencyPublic]]:
    found: dict[int, dict[str, LatencyPublic]] = defaultdict(dict)
    if subnet_ids:
        rows = session.scalars(
            select(SubnetLatency)
            .where(SubnetLatency.subnet_id.in_(list(subnet_ids)))
            .order_by(SubnetLatency.device)
        )
        for row in rows:
            found[row.subnet_id][row.device] = LatencyPublic(
                predicted_ms=row.predicted_ms, measured_ms=row.measured_ms
            )
    return found


def _finetune(stored: dict[str, Any] | None) -> FinetunePublic | None:
    """The stored ``subnets.finetune`` as clients read it (its weights' path stays inside)."""
    return None if stored is None else FinetunePublic.model_validate(stored)


def _public(subnets: Iterable[Subnet], session: Session) -> list[SubnetPublic]:
    subnets = list(subnets)
    latencies = _latencies(session, [s.id for s in subnets])
    return [
        SubnetPublic(
            id=s.id,
            job_id=s.job_id,
            arch_id=s.arch_id,
            arch=s.arch,
            resolution=s.resolution,
            macs=s.macs,
            params=s.params,
            predicted_accuracy=s.predicted_accuracy,
            measured_accuracy=s.measured_accuracy,
            finetuned_accuracy=s.finetuned_accuracy,
            finetune=_finetune(s.finetune),
            latencies=latencies.get(s.id, {}),
        )
        for s in subnets
    ]


# --- fronts ------------------------------------------------------------------------------------


def job_budget(job: Job, device: str) -> dict[str, float | int] | None:
    """The job's budget on ``device`` as submitted; None without one."""
    return spec_budget(job.spec, device)


def spec_budget(spec: dict[str, Any], device: str) -> dict[str, float | int] | None:
    budget = spec.get("search", {}).get("budgets", {}).get(device)
    if not budget:
        return None
    return {key: value for key, value in budget.items() if value is not None} or None


def _front_public(session: Session, job: Job, front: ParetoFront) -> FrontPublic:
    members = session.scalars(
        select(Subnet)
        .join(ParetoMember, ParetoMember.subnet_id == Subnet.id)
        .where(ParetoMember.front_id == front.id)
        .order_by(ParetoMember.position)
    ).all()
    public = _public(members, session)
    budget = job_budget(job, front.device)
    best = best_member(public, front.device, budget)
    return FrontPublic(
        device=front.device,
        objectives=list(front.objectives),
        hypervolume=front.hypervolume,
        budget=budget,
        best_subnet_id=None if best is None else best.id,
        members=public,
    )


def list_fronts(session: Session, job_id: int) -> list[FrontPublic]:
    """The job's fronts in the order of its devices (then any other device by name)."""
    job = get_job(session, job_id)
    fronts = session.scalars(select(ParetoFront).where(ParetoFront.job_id == job_id)).all()
    order = {name: i for i, name in enumerate(job.spec.get("devices", []))}
    fronts = sorted(fronts, key=lambda f: (order.get(f.device, len(order)), f.device))
    return [_front_public(session, job, front) for front in fronts]


def get_front(session: Session, job_id: int, device: str) -> FrontPublic:
    job = get_job(session, job_id)
    front = session.scalars(
        select(ParetoFront).where(ParetoFront.job_id == job_id, ParetoFront.device == device)
    ).one_or_none()
    if front is not None:
        return _front_public(session, job, front)
    if job.state in _BEFORE_FRONTS:
        raise ConflictError(
            f"job {job_id} is {job.state}; its Pareto fronts are written when the searching "
            "stage finishes"
        )
    devices = sorted(
        session.scalars(select(ParetoFront.device).where(ParetoFront.job_id == job_id)).all()
    )
    raise NotFoundError(f"job {job_id} has no Pareto front for {device!r}; it has: {devices}")


# --- fronts as rows (what the front routes answer from, through service.api.caching) --------


@dataclass(frozen=True)
class FrontRows:
    """A job's fronts (or one of them) as read, JSON columns as their stored text:
    ``fronts_from_rows`` is a function of these alone, so they key a cache of answers."""

    spec: str
    #: (device, objectives, hypervolume, then the member's columns: None for a front without
    #: members) by device, then position along the front.
    members: tuple[tuple[Any, ...], ...]
    #: (subnet id, device, predicted_ms, measured_ms) of every member, by subnet and device.
    latencies: tuple[tuple[Any, ...], ...]


def _front_statements(one_device: bool) -> tuple[Any, Any]:
    """The members and their latencies of a job's fronts (``job_id``, and ``device`` when
    ``one_device``, bound per request), built once."""
    where = [ParetoFront.job_id == bindparam("job_id")]
    if one_device:
        where.append(ParetoFront.device == bindparam("device"))
    members = (
        select(
            ParetoFront.device,
            cast(ParetoFront.objectives, Text),
            ParetoFront.hypervolume,
            Subnet.id,
            Subnet.job_id,
            Subnet.arch_id,
            cast(Subnet.arch, Text),
            Subnet.resolution,
            Subnet.macs,
            Subnet.params,
            Subnet.predicted_accuracy,
            Subnet.measured_accuracy,
            Subnet.finetuned_accuracy,
            cast(Subnet.finetune, Text),
        )
        .select_from(ParetoFront)
        .outerjoin(ParetoMember, ParetoMember.front_id == ParetoFront.id)
        .outerjoin(Subnet, Subnet.id == ParetoMember.subnet_id)
        .where(*where)
        .order_by(ParetoFront.device, ParetoMember.position)
    )
    on_front = (
        select(ParetoMember.subnet_id)
        .join(ParetoFront, ParetoFront.id == ParetoMember.front_id)
        .where(*where)
    )
    latencies = (
        select(
            SubnetLatency.subnet_id,
            SubnetLatency.device,
            SubnetLatency.predicted_ms,
            SubnetLatency.measured_ms,
        )
        .where(SubnetLatency.subnet_id.in_(on_front))
        .order_by(SubnetLatency.subnet_id, SubnetLatency.device)
    )
    return members, latencies


_SPEC = select(cast(Job.spec, Text)).where(Job.id == bindparam("job_id"))
_FRONTS = {one_device: _front_statements(one_device) for one_device in (False, True)}


def read_front_rows(session: Session, job_id: int, device: str | None = None) -> FrontRows:
    """The rows of the job's fronts (only ``device``'s if given): three indexed queries."""
    connection = session.connection()
    spec = connection.execute(_SPEC, {"job_id": job_id}).scalar()
    if spec is None:
        raise NotFoundError(f"no job with id {job_id}")
    members, latencies = _FRONTS[device is not None]
    params = {"job_id": job_id, "device": device}
    return FrontRows(
        spec,
        tuple(map(tuple, connection.execute(members, params).all())),
        tuple(map(tuple, connection.execute(latencies, params).all())),
    )


def fronts_from_rows(rows: FrontRows) -> list[FrontPublic]:
    """What ``list_fronts`` (``get_front``, for one device's rows) answers for these rows."""
    spec = json.loads(rows.spec)
    latencies: dict[int, dict[str, LatencyPublic]] = defaultdict(dict)
    for subnet_id, device, predicted_ms, measured_ms in rows.latencies:
        latencies[subnet_id][device] = LatencyPublic(
            predicted_ms=predicted_ms, measured_ms=measured_ms
        )
    heads: dict[str, tuple[str, float | None]] = {}
    members: dict[str, list[SubnetPublic]] = defaultdict(list)
    for device, objectives, hypervolume, subnet_id, *subnet in rows.members:
        heads.setdefault(device, (objectives, hypervolume))
        if subnet_id is None:
            continue
        job_id, arch_id, arch, resolution, macs, params, predicted, measured, *tuned = subnet
        finetuned, finetune = tuned
        members[device].append(
            SubnetPublic(
                id=subnet_id,
                job_id=job_id,
                arch_id=arch_id,
                arch=json.loads(arch),
                resolution=resolution,
                macs=macs,
                params=params,
                predicted_accuracy=predicted,
                measured_accuracy=measured,
                finetuned_accuracy=finetuned,
                finetune=_finetune(None if finetune is None else json.loads(finetune)),
                latencies=latencies.get(subnet_id, {}),
            )
        )
    order = {name: i for i, name in enumerate(spec.get("devices", []))}
    fronts = []
    for device in sorted(heads, key=lambda d: (order.get(d, len(order)), d)):
        objectives, hypervolume = heads[device]
        budget = spec_budget(spec, device)
        best = best_member(members[device], device, budget)
        fronts.append(
            FrontPublic(
                device=device,
                objectives=json.loads(objectives),
                hypervolume=hypervolume,
                budget=budget,
                best_subnet_id=None if best is None else best.id,
                members=members[device],
            )
        )
    return fronts


# --- subnets -----------------------------------------------------------------------------------


def result_devices(session: Session, job: Job) -> list[str]:
    """The devices a job has results for: its own, and any a specialisation added."""
    measured = session.scalars(
        select(SubnetLatency.device)
        .join(Subnet, Subnet.id == SubnetLatency.subnet_id)
        .where(Subnet.job_id == job.id)
        .distinct()
    ).all()
    own = list(job.spec.get("devices", []))
    return own + sorted(set(measured) - set(own))


def list_subnets(
    session: Session, job_id: int, query: SubnetQuery
) -> tuple[list[SubnetPublic], int]:
    """One page of a job's subnets, filtered and sorted (missing values last); the total."""
    job = get_job(session, job_id)
    if query.device is not None:
        allowed = result_devices(session, job)
        if query.device not in allowed:
            raise InvalidFieldError(
                ("query", "device"),
                f"job {job_id} has no results for device {query.device!r}; allowed values: "
                f"{allowed}",
            )
    elif query.sort == "latency" or query.max_latency_ms is not None:
        needs = "sort=latency" if query.sort == "latency" else "max_latency_ms"
        raise InvalidFieldError(
            ("query", "device"),
            f"{needs} needs a device; allowed values: {result_devices(session, job)}",
        )

    statement = select(Subnet).where(Subnet.job_id == job_id)
    latency: ColumnElement[Any] | None = None
    if query.device is not None:
        statement = statement.outerjoin(
            SubnetLatency,
            and_(SubnetLatency.subnet_id == Subnet.id, SubnetLatency.device == query.device),
        )
        latency = func.coalesce(SubnetLatency.measured_ms, SubnetLatency.predicted_ms)
    if query.min_accuracy is not None:
        statement = statement.where(_accuracy() >= query.min_accuracy)
    if query.max_macs is not None:
        statement = statement.where(Subnet.macs <= query.max_macs)
    if query.max_latency_ms is not None and latency is not None:
        statement = statement.where(latency <= query.max_latency_ms)
    if query.on_front is not None:
        membership = (
            select(ParetoMember.subnet_id)
            .join(ParetoFront, ParetoFront.id == ParetoMember.front_id)
            .where(ParetoMember.subnet_id == Subnet.id)
        )
        if query.device is not None:
            membership = membership.where(ParetoFront.device == query.device)
        on_front = exists(membership)
        statement = statement.where(on_front if query.on_front else ~on_front)

    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    keys: dict[str, ColumnElement[Any]] = {
        "accuracy": _accuracy(),
        "macs": Subnet.macs,
        "params": Subnet.params,
    }
    key = latency if query.sort == "latency" and latency is not None else keys[query.sort]
    order = query.order or ("desc" if query.sort == "accuracy" else "asc")
    page = session.scalars(
        statement.order_by(
            key.is_(None),  # missing values last, on SQLite and PostgreSQL alike
            key.desc() if order == "desc" else key.asc(),
            Subnet.id,
        )
        .limit(query.limit)
        .offset(query.offset)
    ).all()
    return _public(page, session), total


def measured_subnets(session: Session, job_id: int) -> list[SubnetPublic]:
    """Every subnet of the job with a measured val accuracy: what fronts and picks are made
    of."""
    rows = session.scalars(
        select(Subnet)
        .where(Subnet.job_id == job_id, Subnet.measured_accuracy.is_not(None))
        .order_by(Subnet.id)
    ).all()
    return _public(rows, session)


def get_subnet_row(session: Session, subnet_id: int) -> Subnet:
    subnet = session.get(Subnet, subnet_id)
    if subnet is None:
        raise NotFoundError(f"no subnet with id {subnet_id}")
    return subnet


def get_subnet(session: Session, subnet_id: int) -> SubnetDetailPublic:
    """One subnet with its latencies, files and the fronts it is on."""
    subnet = get_subnet_row(session, subnet_id)
    (public,) = _public([subnet], session)
    artifacts = session.scalars(
        select(Artifact).where(Artifact.subnet_id == subnet_id).order_by(Artifact.id)
    ).all()
    fronts = session.execute(
        select(ParetoFront.device, ParetoMember.position)
        .join(ParetoMember, ParetoMember.front_id == ParetoFront.id)
        .where(ParetoMember.subnet_id == subnet_id)
        .order_by(ParetoFront.device)
    ).all()
    return SubnetDetailPublic(
        **public.model_dump(),
        artifacts=[
            ArtifactPublic(
                id=a.id,
                kind=a.kind,
                format=FORMAT_OF_KIND.get(a.kind),
                weights=weights_of_kind(a.kind, finetuned=subnet.finetune is not None),
                sha256=a.sha256,
                size_bytes=a.size_bytes,
                created_at=a.created_at,
            )
            for a in artifacts
        ],
        fronts=[FrontMembershipPublic(device=d, position=p) for d, p in fronts],
    )


# --- what the API adds -------------------------------------------------------------------------


def _merge_latencies(session: Session, subnet_id: int, record: SubnetRecord) -> None:
    for device, latency in record.latencies.items():
        row = session.get(SubnetLatency, (subnet_id, device))
        if row is None:
            session.add(
                SubnetLatency(
                    subnet_id=subnet_id,
                    device=device,
                    predicted_ms=latency.predicted_ms,
                    measured_ms=latency.measured_ms,
                )
            )
            continue
        # A new figure replaces an old one; a missing one never erases what was known.
        if latency.predicted_ms is not None:
            row.predicted_ms = latency.predicted_ms
        if latency.measured_ms is not None:
            row.measured_ms = latency.measured_ms


def record_subnet(session: Session, job_id: int, record: SubnetRecord) -> int:
    """Store a subnet of a job (once per ``(job, arch_id)``) with its latencies; its id.

    A subnet the job already holds keeps its row: latencies for new devices are added and
    accuracies it did not have are filled in.
    """
    for _ in range(2):  # the second pass reads the row a concurrent request inserted
        subnet = session.scalars(
            select(Subnet).where(Subnet.job_id == job_id, Subnet.arch_id == record.arch_id)
        ).one_or_none()
        if subnet is None:
            subnet = Subnet(
                job_id=job_id,
                **record.model_dump(exclude={"latencies"}),
            )
            session.add(subnet)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                continue
        else:
            if subnet.measured_accuracy is None:
                subnet.measured_accuracy = record.measured_accuracy
            if subnet.predicted_accuracy is None:
                subnet.predicted_accuracy = record.predicted_accuracy
        _merge_latencies(session, subnet.id, record)
        session.commit()
        return subnet.id
    raise ConflictError(f"subnet {record.arch_id!r} of job {job_id} changed meanwhile; retry")


def find_artifact(session: Session, subnet_id: int, kind: str) -> Artifact | None:
    """The newest file of this kind for the subnet."""
    return session.scalars(
        select(Artifact)
        .where(Artifact.subnet_id == subnet_id, Artifact.kind == kind)
        .order_by(Artifact.id.desc())
        .limit(1)
    ).one_or_none()


def record_artifact(
    session: Session,
    *,
    job_id: int,
    subnet_id: int,
    kind: str,
    path: str,
    sha256: str,
    size_bytes: int,
) -> Artifact:
    """Register a file (``path`` relative to NAS_ARTIFACT_DIR); a path already registered
    has its row updated, since the file at it was just rewritten."""
    for _ in range(2):
        row = session.scalars(select(Artifact).where(Artifact.path == path)).one_or_none()
        if row is None:
            row = Artifact(job_id=job_id, path=path, kind=kind, sha256="", size_bytes=0)
            session.add(row)
        row.subnet_id, row.kind, row.sha256, row.size_bytes = subnet_id, kind, sha256, size_bytes
        try:
            session.commit()
        except IntegrityError:  # a concurrent export registered the same path first
            session.rollback()
            continue
        return row
    raise ConflictError(f"artifact {path!r} changed meanwhile; retry")
