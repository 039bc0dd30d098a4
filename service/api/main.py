"""Assembles the routers of every resource into the app: ``/health`` at the root, the
resources under ``/api/v1`` (reads there need a token only when NAS_READS_REQUIRE_TOKEN)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.api.auth import require_read
from service.api.routes import devices, health, jobs, results, spaces, specialize, subnets

API_PREFIX = "/api/v1"

v1_router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_read)])
v1_router.include_router(jobs.router)
v1_router.include_router(results.router)
v1_router.include_router(specialize.router)
v1_router.include_router(subnets.router)
v1_router.include_router(devices.router)
v1_router.include_router(spaces.router)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(v1_router)
