"""Request and response bodies of the REST API (pydantic), kept apart from database rows:
``XCreate`` is what a client sends, ``XPublic`` what it gets back."""

from __future__ import annotations

from service.api.schemas.common import ErrorPublic, FieldError, ValidationErrorPublic
from service.api.schemas.health import HealthPublic
from service.api.schemas.results import (
    FrontPublic,
    FrontsPublic,
    SpecializeCreate,
    SpecializePublic,
    SubnetDetailPublic,
    SubnetPublic,
    SubnetsPublic,
)

__all__ = [
    "ErrorPublic",
    "FieldError",
    "FrontPublic",
    "FrontsPublic",
    "HealthPublic",
    "SpecializeCreate",
    "SpecializePublic",
    "SubnetDetailPublic",
    "SubnetPublic",
    "SubnetsPublic",
    "ValidationErrorPublic",
]
