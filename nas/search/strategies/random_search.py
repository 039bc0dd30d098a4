"""Random search: distinct feasible subnets drawn uniformly, each truly evaluated (after the
min and max subnets that every strategy starts from). The baseline every other strategy has
to beat (Li and Talwalkar, UAI 2019)."""

from __future__ import annotations

import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nas.search.archive import Archive
from nas.search.problem import SearchProblem
from nas.search.results import SearchResult
from nas.search.strategies.base import ProgressFn, SearchStrategy, finish
from nas.search.variation import MAX_ROUNDS, initial_population, sample_feasible


class RandomConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_evaluations: int = Field(default=100, ge=1, le=10_000_000)
    batch_size: int = Field(default=25, ge=1, le=100_000, description="Subnets per batch.")
    max_rounds: int = Field(default=MAX_ROUNDS, ge=1, le=1000)


class RandomSearch(SearchStrategy[RandomConfig]):
    name = "random"
    config_type = RandomConfig

    def run(
        self, problem: SearchProblem, *, seed: int = 0, progress: ProgressFn | None = None
    ) -> SearchResult:
        started = time.perf_counter()
        config = self.config
        rng = np.random.default_rng(seed)
        archive = Archive(problem, config.max_evaluations)
        while not archive.exhausted:
            wanted = min(config.batch_size, archive.remaining or 0)
            draw = initial_population if len(archive) == 0 else sample_feasible
            batch = draw(problem, wanted, rng, exclude=archive.keys(), max_rounds=config.max_rounds)
            if len(batch) == 0:  # every reachable feasible network is evaluated
                break
            archive.evaluate(batch)
            if progress is not None:
                progress(len(archive), config.max_evaluations)
        return finish(
            problem,
            strategy=self.name,
            seed=seed,
            started=started,
            scored=len(archive),
            archive=archive,
        )
