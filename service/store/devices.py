"""Devices: the built-in host devices, registered ones, and their latency tables.

Follows ``nas.hardware.DeviceStore``'s contract on the database: a device is registered by
the first table measured on it; built-in names cannot be registered; a table must have been
measured with the registered device's settings. Unlike the directory store, a new table for
the same space and preset becomes a new revision instead of replacing the old one.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

import search_spaces
from nas.hardware.device import BUILTIN_NAMES, builtin_devices
from nas.hardware.device import Device as DeviceSpec
from nas.hardware.table import LatencyTable as TableSpec
from service.api.schemas.devices import DevicePublic, LatencyTableInfo
from service.errors import ConflictError, ForbiddenError, InvalidFieldError, NotFoundError
from service.models import Device, LatencyTable
from service.store.documents import canonical_json, check_finite, sha256_hex


def _spec(device: Device) -> DeviceSpec:
    return DeviceSpec(
        name=device.name,
        runtime=device.runtime,  # type: ignore[arg-type]
        accelerator=device.accelerator,  # type: ignore[arg-type]
        batch_size=device.batch_size,
        threads=device.threads,
        dtype=device.dtype,  # type: ignore[arg-type]
        hardware=device.description,
    )


def _public(device: Device) -> DevicePublic:
    return DevicePublic(
        **_spec(device).model_dump(),
        builtin=False,
        created_at=device.created_at,
        tables=[LatencyTableInfo.model_validate(t) for t in device.tables],
    )


def _builtin_public(name: str) -> DevicePublic:
    device = builtin_devices()[name]
    return DevicePublic(**device.model_dump(), builtin=True, created_at=None, tables=[])


def list_devices(session: Session) -> list[DevicePublic]:
    """Built-in host devices first, then registered ones by name."""
    registered = session.scalars(
        select(Device).options(selectinload(Device.tables)).order_by(Device.name)
    ).all()
    return [_builtin_public(name) for name in BUILTIN_NAMES] + [_public(d) for d in registered]


def _registered(session: Session, name: str) -> Device | None:
    return session.scalars(
        select(Device).options(selectinload(Device.tables)).where(Device.name == name)
    ).one_or_none()


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"no device named {name!r} (GET /api/v1/devices lists them)")


def get_device(session: Session, name: str) -> DevicePublic:
    if name in BUILTIN_NAMES:
        return _builtin_public(name)
    device = _registered(session, name)
    if device is None:
        raise _not_found(name)
    return _public(device)


def _check_table(table: TableSpec) -> None:
    """What the table model cannot know: the space and preset exist here, the profile ran to
    the end, every number is finite, the free text fits a database text column."""
    if table.space not in search_spaces.names():
        raise InvalidFieldError(
            ("body", "space"),
            f"unknown search space {table.space!r}; allowed values: {search_spaces.names()}",
        )
    presets = search_spaces.presets(table.space)
    if table.preset not in presets:
        raise InvalidFieldError(
            ("body", "preset"),
            f"{table.preset!r} is not a preset of {table.space!r}; allowed values: {presets}",
        )
    if not table.complete:
        missing = "; calibration missing" if table.calibration is None else ""
        raise InvalidFieldError(
            ("body", "entries"),
            f"incomplete table: {len(table.entries)} of {table.expected_entries} blocks "
            f"measured{missing}; finish `nas device profile` before uploading",
        )
    if "\x00" in table.device.hardware:
        raise InvalidFieldError(("body", "device", "hardware"), "NUL characters are not allowed")
    check_finite(table.model_dump(), ("body",))


def register_device(session: Session, table: TableSpec, *, owner: str) -> DevicePublic:
    """Register the device a table was measured on, with that table as revision 1."""
    _check_table(table)
    spec = table.device
    if spec.name in BUILTIN_NAMES:
        raise InvalidFieldError(
            ("body", "device", "name"),
            f"{spec.name!r} is a built-in device; choose another name (reserved: "
            f"{list(BUILTIN_NAMES)})",
        )
    device = Device(
        name=spec.name,
        runtime=spec.runtime,
        accelerator=spec.accelerator,
        batch_size=spec.batch_size,
        threads=spec.threads,
        dtype=spec.dtype,
        description=spec.hardware,
        owner=owner,
    )
    session.add(device)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise ConflictError(
            f"device {spec.name!r} is already registered; upload a new table with "
            f"POST /api/v1/devices/{spec.name}/latency-tables"
        ) from None
    _add_table(session, device, table, owner=owner)
    session.commit()
    return get_device(session, spec.name)


def upload_table(
    session: Session, name: str, table: TableSpec, *, owner: str, admin: bool = True
) -> tuple[LatencyTableInfo, bool]:
    """Store a table of device ``name`` (registering the device on its first table) as the
    next revision for its space and preset; ``(table, created)``. The same table uploaded
    again returns the stored revision. A non-``admin`` adds tables to its own devices only:
    the newest revision is what every job on the device uses."""
    if table.device.name != name:
        raise InvalidFieldError(
            ("body", "device", "name"),
            f"the table was measured on {table.device.name!r}, not {name!r}; allowed values: "
            f"[{name!r}]",
        )
    if name in BUILTIN_NAMES:
        raise ConflictError(f"{name!r} is a built-in device; it takes no uploaded tables")
    device = _registered(session, name)
    if device is None:
        register_device(session, table, owner=owner)
        created = _registered(session, name)
        assert created is not None
        return LatencyTableInfo.model_validate(created.tables[0]), True
    if not admin and device.owner != owner:
        raise ForbiddenError(
            f"device {name!r} belongs to {device.owner!r}; the token {owner!r} (role user) "
            "uploads tables of its own devices only (an admin token of any)"
        )
    _check_table(table)
    if _spec(device) != table.device:
        raise ConflictError(
            f"the table was measured with settings that differ from registered device "
            f"{name!r} ({_spec(device).model_dump()}); register a new device for new settings"
        )
    row, created = _add_table(session, device, table, owner=owner)
    try:
        session.commit()
    except IntegrityError:  # a concurrent upload took this revision number
        session.rollback()
        raise ConflictError(
            f"another table for {name!r} was uploaded at the same time; retry"
        ) from None
    return LatencyTableInfo.model_validate(row), created


def _add_table(
    session: Session, device: Device, table: TableSpec, *, owner: str
) -> tuple[LatencyTable, bool]:
    content = table.model_dump(mode="json")
    document = canonical_json(content)
    digest = sha256_hex(document)
    same = session.scalars(
        select(LatencyTable).where(
            LatencyTable.device_id == device.id, LatencyTable.sha256 == digest
        )
    ).one_or_none()
    if same is not None:
        return same, False
    latest = session.scalar(
        select(func.max(LatencyTable.revision)).where(
            LatencyTable.device_id == device.id,
            LatencyTable.space == table.space,
            LatencyTable.preset == table.preset,
        )
    )
    row = LatencyTable(
        device_id=device.id,
        space=table.space,
        preset=table.preset,
        revision=(latest or 0) + 1,
        format_version=table.format_version,
        content=content,
        sha256=digest,
        size_bytes=len(document),
        owner=owner,
    )
    session.add(row)
    session.flush()
    return row, True


def get_table(session: Session, name: str, table_id: int) -> LatencyTable:
    """One stored table of a registered device, with its content."""
    table = session.scalars(
        select(LatencyTable).join(Device).where(Device.name == name, LatencyTable.id == table_id)
    ).one_or_none()
    if table is None:
        get_device(session, name)  # says which is missing: the device or the table
        raise NotFoundError(f"device {name!r} has no latency table with id {table_id}")
    return table


def latest_table(session: Session, name: str, space: str, preset: str) -> TableSpec | None:
    """The newest revision of registered device ``name``'s table for ``space``/``preset``."""
    row = session.scalars(
        select(LatencyTable)
        .join(Device)
        .where(Device.name == name, LatencyTable.space == space, LatencyTable.preset == preset)
        .order_by(LatencyTable.revision.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else TableSpec.model_validate(row.content)
