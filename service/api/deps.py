"""``Annotated`` dependency aliases that routes declare instead of reaching into app state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from service.dispatcher import Dispatcher
from service.finetunes import FinetuneQueue
from service.settings import Settings

#: Ids are 32-bit in the database; a larger one is a 422, not a database error.
MAX_ID = 2**31 - 1


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


def get_read_session(request: Request) -> Iterator[Session]:
    """For routes that only read: on SQLite their transactions take no write lock, so reads
    neither queue behind submissions nor behind each other (see ``service.db``)."""
    engine = request.app.state.engine.execution_options(read_only=True)
    with request.app.state.session_factory(bind=engine) as session:
        yield session


def get_dispatcher(request: Request) -> Dispatcher | None:
    return getattr(request.app.state, "dispatcher", None)


def get_finetunes(request: Request) -> FinetuneQueue:
    return request.app.state.finetunes


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
DispatcherDep = Annotated[Dispatcher | None, Depends(get_dispatcher)]
FinetunesDep = Annotated[FinetuneQueue, Depends(get_finetunes)]

JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="The job's id.")]
Limit = Annotated[int, Query(ge=1, le=500, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="Items to skip.")]
