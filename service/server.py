"""Starting the service: migrations first (an explicit step), then uvicorn."""

from __future__ import annotations

import logging

from service.settings import Settings

log = logging.getLogger("service")


def serve(settings: Settings | None = None) -> None:
    """Check and migrate the database (``service.migrate.DatabaseStartError`` if it cannot be
    used), then serve until stopped."""
    from service.migrate import prepare_database

    settings = settings if settings is not None else Settings()
    settings.artifact_dir.mkdir(parents=True, exist_ok=True)
    prepare_database(settings.database_url)

    import uvicorn

    from service.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
