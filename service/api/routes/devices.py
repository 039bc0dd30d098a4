"""Devices: the built-in host devices and registered ones, with their latency tables."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from nas.hardware.device import NAME_PATTERN
from service.api.auth import WriteAccess
from service.api.deps import MAX_ID, ReadSessionDep, SessionDep
from service.api.large_bodies import OffLoopJSONRoute
from service.api.schemas.common import (
    COMMON_RESPONSES,
    FORBIDDEN,
    ErrorPublic,
    ValidationErrorPublic,
)
from service.api.schemas.devices import (
    TABLE_CHECKS,
    DevicePublic,
    DevicesPublic,
    LatencyTableInfo,
    LatencyTablePublic,
    LatencyTableUpload,
)
from service.store import devices as store

router = APIRouter(
    prefix="/devices",
    tags=["devices"],
    responses=COMMON_RESPONSES,
    route_class=OffLoopJSONRoute,  # large bodies parsed off the event loop
)
_NOT_FOUND = {404: {"model": ErrorPublic, "description": "No such device or table."}}
_CONFLICT = {409: {"model": ErrorPublic, "description": "Name taken, built in, or other settings."}}
_REFUSED = "The fields at fault; beyond the schema, checked here:"
_REGISTER_REFUSED = {
    422: {"model": ValidationErrorPublic, "description": f"{_REFUSED} {TABLE_CHECKS}."}
}
_UPLOAD_REFUSED = {
    422: {
        "model": ValidationErrorPublic,
        "description": f"{_REFUSED} `device.name` is the path's `name`; {TABLE_CHECKS}.",
    }
}

DeviceName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="Device name (lower-case, 1-64).")
]


@router.get("", response_model=DevicesPublic)
def list_devices(session: ReadSessionDep) -> DevicesPublic:
    """List the built-in host devices and the registered ones."""
    devices = store.list_devices(session)
    return DevicesPublic(data=devices, count=len(devices))


@router.get("/{name}", response_model=DevicePublic, responses=_NOT_FOUND)
def read_device(name: DeviceName, session: ReadSessionDep) -> DevicePublic:
    """Read one device and the latency tables stored for it."""
    return store.get_device(session, name)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DevicePublic,
    responses={**_CONFLICT, **_REGISTER_REFUSED},
)
def register_device(
    body: LatencyTableUpload,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: WriteAccess,
) -> DevicePublic:
    """Register the device a latency table was measured on (`nas device profile`), with it."""
    device = store.register_device(session, body, owner=principal.owner)
    response.headers["Location"] = str(request.url_for("read_device", name=device.name))
    return device


@router.post(
    "/{name}/latency-tables",
    status_code=status.HTTP_201_CREATED,
    response_model=LatencyTableInfo,
    responses={
        200: {"model": LatencyTableInfo, "description": "The same table was stored before."},
        **_CONFLICT,
        **_UPLOAD_REFUSED,
        **FORBIDDEN,
    },
)
def upload_table(
    name: DeviceName,
    body: LatencyTableUpload,
    response: Response,
    session: SessionDep,
    principal: WriteAccess,
) -> LatencyTableInfo:
    """Upload a latency table of a device (`nas device upload`); a new device is registered."""
    table, created = store.upload_table(
        session, name, body, owner=principal.owner, admin=principal.role == "admin"
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return table


@router.get(
    "/{name}/latency-tables/{table_id}", response_model=LatencyTablePublic, responses=_NOT_FOUND
)
def read_table(
    name: DeviceName,
    table_id: Annotated[int, Path(ge=1, le=MAX_ID, description="The table's id.")],
    session: ReadSessionDep,
) -> LatencyTablePublic:
    """Read one stored latency table with its content."""
    return LatencyTablePublic.model_validate(store.get_table(session, name, table_id))
