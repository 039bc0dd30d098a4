"""The FastAPI app factory: settings in, app out; the database engine, the dispatcher (which
runs queued jobs on Ray) and the queue of fine-tunings asked for live in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from nas import __version__
from service.api.auth import document_security
from service.api.body_limit import BodyLimitMiddleware
from service.api.docs import mount_api_docs
from service.api.main import API_PREFIX, api_router
from service.api.methods import install_allow_header
from service.dashboard import mount_dashboard
from service.db import create_db_engine, create_session_factory
from service.dispatcher import Dispatcher
from service.errors import install_error_handlers
from service.finetunes import FinetuneQueue
from service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; nothing touches the database until the app starts."""
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(settings.database_url)
        app.state.engine = engine
        app.state.session_factory = create_session_factory(engine)
        dispatcher = None
        if settings.dispatcher_enabled:
            dispatcher = Dispatcher(settings, app.state.session_factory)
            dispatcher.start()
        app.state.dispatcher = dispatcher
        # made here, not on first use: two first requests at once must not start two workers
        app.state.finetunes = FinetuneQueue(settings, app.state.session_factory)
        try:
            yield
        finally:
            app.state.finetunes.close()  # stops running trials before Ray goes with the process
            if dispatcher is not None:
                dispatcher.stop()
            engine.dispose()

    app = FastAPI(
        title="nas-service",
        version=__version__,
        summary="Hardware-aware neural architecture search as a service.",
        lifespan=lifespan,
        docs_url=None,  # served by mount_api_docs without a CDN
        redoc_url=None,
    )
    app.add_middleware(BodyLimitMiddleware, settings=settings, api_prefix=API_PREFIX)
    app.state.settings = settings
    install_error_handlers(app)
    install_allow_header(app)
    app.include_router(api_router)
    document_security(app, settings)
    mount_api_docs(app)
    mount_dashboard(app)
    return app
