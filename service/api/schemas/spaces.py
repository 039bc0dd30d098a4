"""Bodies of the search-space endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field

from search_spaces import SpaceSummary


class SpacePublic(BaseModel):
    name: str
    presets: dict[str, SpaceSummary] = Field(
        description="Per preset: dimensions, resolutions, number of subnets, MACs and params."
    )


class SpacesPublic(BaseModel):
    data: list[SpacePublic]
    count: int
