"""Search spaces: what each offers (dimensions, presets, sizes), for building a job spec."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Path

import search_spaces
from service.api.schemas.common import COMMON_RESPONSES, ErrorPublic
from service.api.schemas.spaces import SpacePublic, SpacesPublic
from service.errors import NotFoundError

router = APIRouter(prefix="/spaces", tags=["spaces"], responses=COMMON_RESPONSES)


@lru_cache(maxsize=32)
def _describe(name: str) -> SpacePublic:
    # Spaces are immutable and describing one computes MACs ranges: once per process.
    presets = {
        preset: search_spaces.get(name, preset=preset).describe()
        for preset in search_spaces.presets(name)
    }
    return SpacePublic(name=name, presets=presets)


@router.get("", response_model=SpacesPublic)
def list_spaces() -> SpacesPublic:
    """List the search spaces with their dimensions and presets."""
    spaces = [_describe(name) for name in search_spaces.names()]
    return SpacesPublic(data=spaces, count=len(spaces))


@router.get(
    "/{name}",
    response_model=SpacePublic,
    responses={404: {"model": ErrorPublic, "description": "No such search space."}},
)
def read_space(
    name: Annotated[str, Path(max_length=64, description="A search space name.")],
) -> SpacePublic:
    """Read one search space: its dimensions and presets."""
    if name not in search_spaces.names():
        raise NotFoundError(
            f"no search space named {name!r}; allowed values: {search_spaces.names()}"
        )
    return _describe(name)
