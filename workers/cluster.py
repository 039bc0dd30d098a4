"""The Ray this process runs on: an existing cluster by address, or a private one on loopback.

A local Ray left to its defaults binds its GCS, raylet, object manager and worker ports on
every interface, so anyone who can reach the machine could run code as the service. Ray
resolves even an explicit ``127.0.0.1`` node address to the machine's outward address; only
its single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps the node, and with it
every server, on loopback. Both settings are read when Ray is imported and inherited by the
processes it starts, so they are set here before the first ``import ray``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: What a private Ray needs in its environment: loopback only, and token authentication.
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}


def connect_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    namespace: str | None = None,
    dashboard: bool = False,
) -> bool:
    """Join ``address``, or start a private Ray bound to loopback; no-op when already connected.

    Returns whether this call started or joined Ray (the caller then owns the shutdown).
    ``dashboard`` starts Ray's own dashboard, on 127.0.0.1 only.
    """
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False
    saved = dict(os.environ)
    if address is None:
        for name, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(name, value)
    try:
        return _init(address, num_cpus=num_cpus, namespace=namespace, dashboard=dashboard)
    finally:
        # Ray's processes took the environment with them; a node this process starts later
        # with `ray start` (tests/test_multinode.py) must not inherit single-machine mode.
        if "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in saved:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)


def _init(
    address: str | None, *, num_cpus: int | None, namespace: str | None, dashboard: bool
) -> bool:
    import ray

    options: dict[str, Any] = {"log_to_driver": False, "include_dashboard": dashboard}
    if dashboard:
        options["dashboard_host"] = "127.0.0.1"
    if namespace is not None:
        options["namespace"] = namespace
    if address is None:
        options["num_cpus"] = num_cpus
    ray.init(address=address, **options)
    return True
