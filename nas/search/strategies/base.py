"""The strategy contract: ``run(problem, seed=...) -> SearchResult``.

A strategy is configured once (a pydantic config, validated at construction, so a bad job spec
fails with the field's name) and may run many problems; ``run`` holds no state between calls,
draws all randomness from ``numpy.random.default_rng(seed)`` (same seed, same result) and
reports progress as ``(done, total)`` steps.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel

from nas.search.archive import Archive
from nas.search.problem import Candidates, SearchProblem
from nas.search.results import SearchResult, build_result

ProgressFn = Callable[[int, int], None]
ConfigT = TypeVar("ConfigT", bound=BaseModel)


class SearchStrategy(abc.ABC, Generic[ConfigT]):
    """A search algorithm over any ``SearchProblem``."""

    name: ClassVar[str]
    config_type: ClassVar[type[BaseModel]]

    def __init__(self, config: ConfigT | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ValueError("config: pass either a config object or keyword options, not both")
        self.config: ConfigT = config or self.config_type.model_validate(options)  # type: ignore[assignment]

    @abc.abstractmethod
    def run(
        self, problem: SearchProblem, *, seed: int = 0, progress: ProgressFn | None = None
    ) -> SearchResult: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def needs_budget(problem: SearchProblem, max_evaluations: int | None, strategy: str) -> None:
    """Expensive objectives must be bounded: refuse a run that could evaluate without end."""
    if any(problem.expensive) and max_evaluations is None:
        names = [o.name for o in problem.objectives if o.expensive]
        raise ValueError(
            f"max_evaluations: required by {strategy} when an objective is measured ({names})"
        )


def truncate_to_budget(archive: Archive, candidates: Candidates) -> Candidates:
    """The leading candidates whose new networks fit in the archive's remaining budget."""
    remaining = archive.remaining
    if remaining is None:
        return candidates
    keep, new = [], set()
    for i, key in enumerate(candidates.keys):
        if key not in archive and key not in new:
            if len(new) >= remaining:
                continue
            new.add(key)
        keep.append(i)
    return candidates if len(keep) == len(candidates) else candidates.take(np.array(keep))


def distinct(candidates: Candidates) -> np.ndarray:
    """Index of the first occurrence of every network."""
    first: dict[bytes, int] = {}
    for i, key in enumerate(candidates.keys):
        first.setdefault(key, i)
    return np.array(sorted(first.values()), dtype=np.int64)


def finish(
    problem: SearchProblem,
    *,
    strategy: str,
    seed: int,
    started: float,
    scored: int,
    archive: Archive | None = None,
    population: Candidates | None = None,
    values: np.ndarray | None = None,
    ranked_by: int = 0,
) -> SearchResult:
    """The result of a run: every archived (truly evaluated) subnet in evaluation order, or,
    without an archive, the distinct members of the final ``population``."""
    import time

    if archive is not None:
        final, order = archive.candidates(), list(range(len(archive)))
        final_values = archive.values()
    elif population is not None:
        first = distinct(population)
        final, order = population.take(first), None
        final_values = problem.evaluate(final) if values is None else values[first]
    else:
        raise ValueError("archive/population: a run ends with one of them")
    return build_result(
        problem,
        strategy=strategy,
        seed=seed,
        candidates=final,
        values=final_values,
        evaluation=order,
        num_evaluations=len(archive) if archive is not None and any(problem.expensive) else 0,
        num_candidates=scored,
        seconds=time.perf_counter() - started,
        ranked_by=ranked_by,
    )
