"""Starting the service: migrations first (an explicit step), then uvicorn."""

from __future__ import annotations

import logging
import socket

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

    if not settings.share_port:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
        return
    try:
        sock = shared_socket(settings.host, settings.port)
    except OSError as exc:
        raise SystemExit(
            f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    config = uvicorn.Config(create_app(settings), log_level="info")
    uvicorn.Server(config).run(sockets=[sock])


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (SO_REUSEPORT): several API
    processes on one port, and the kernel spreads the connections over them (a socket shared
    by fork, as ``uvicorn --workers`` has, leaves them to whichever process accepts first, and
    a burst often all lands on one). IPPROTO_TCP, because asyncio sets TCP_NODELAY only on
    such sockets: without it an answer written in two parts waits 40 ms for a delayed ACK."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock
