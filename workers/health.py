"""Health gates: does the trained supernet beat chance, and can the predictor rank subnets?

Without them a job whose supernet stayed at chance, or whose accuracy predictor has no skill,
ends "succeeded" and nothing warns. The checks are plain functions of measured figures and the
job's ``HealthSettings``; ``gate_training`` and ``gate_predictor`` measure, report and decide.
Each gate's result is a metrics event keyed ``health/<gate>``: it shows in the job's log, a
resumed attempt replays it from ``metrics.jsonl`` (one per key: never lost, never doubled),
and the service derives a job's health and warnings from it, so no column holds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nas.training.config import TrainingConfig
from workers.events import LogLevel
from workers.spec import HealthAction, HealthSettings

if TYPE_CHECKING:
    from nas.predictors import PredictorReport
    from workers.jobs import StageContext

#: Metrics keys of the gates' results start with this.
HEALTH_KEY_PREFIX = "health/"
GateName = Literal["training", "predictor"]
GATE_ORDER: tuple[GateName, ...] = ("training", "predictor")
CheckName = Literal[
    "max_subnet_vs_chance",
    "min_subnet_vs_chance",
    "median_subnet_vs_chance",
    "predictor_kendall_tau",
    "predictor_rmse",
]


class HealthGateError(RuntimeError):
    """A gate set to ``fail`` missed: the message says what, the figures, and what to change."""


class HealthCheck(BaseModel):
    """One measured figure against its threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    check: CheckName
    gate: GateName
    passed: bool
    value: float | None = Field(description="The measured figure; None if it is undefined.")
    threshold: float
    bound: Literal["min", "max"] = Field(
        description="min: the value must be at least the threshold; max: at most."
    )
    unit: Literal["%", "points", ""] = Field(description="% of val images; accuracy points.")
    action: HealthAction = Field(description="What a miss does: fail the job, or warn.")
    message: str = Field(description="What was measured, in a sentence.")
    advice: str | None = Field(default=None, description="What to change; None if it passed.")


class HealthReport(BaseModel):
    """A gate's checks and the figures they were computed from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gate: GateName
    checks: list[HealthCheck]
    figures: dict[str, float | int | bool | None]

    @property
    def missed(self) -> list[HealthCheck]:
        return [check for check in self.checks if not check.passed]

    @property
    def fatal(self) -> bool:
        return any(check.action == "fail" for check in self.missed)

    @property
    def outcome(self) -> Literal["passed", "warned", "failed"]:
        return "failed" if self.fatal else "warned" if self.missed else "passed"

    def summary(self) -> str:
        missed = self.missed
        if not missed:
            return f"health {self.gate}: passed ({'; '.join(c.message for c in self.checks)})"
        return f"health {self.gate}: {self.outcome} ({'; '.join(c.message for c in missed)})"

    def error(self) -> str:
        """The job's error when the gate fails it: what failed, the figures, what to change."""
        missed = self.missed
        advice = " ".join(dict.fromkeys(c.advice for c in missed if c.advice))
        key = "on_training_failure" if self.gate == "training" else "on_predictor_failure"
        return (
            f"health gate {self.gate!r} failed: {'; '.join(c.message for c in missed)}. "
            f"What to change: {advice} The files and log of the job are kept; to go on "
            f"despite this, set health.{key}: warn."
        )


def chance_percent(num_classes: int) -> float:
    """Top-1 accuracy (%) of guessing one class out of ``num_classes``."""
    if num_classes < 2:
        raise ValueError(f"num_classes: at least 2, got {num_classes}")
    return 100.0 / num_classes


def required_accuracy(ratio: float, num_classes: int) -> float:
    """``ratio`` times chance, capped at closing ``1 - 1/ratio`` of the gap from chance to
    100%: 2x chance on 2 classes would ask for a perfect 100%, the cap asks for 75%. With 3
    or more classes the cap never binds."""
    chance = chance_percent(num_classes)
    if ratio <= 1.0:
        return ratio * chance
    return min(ratio * chance, chance + (100.0 - chance) * (1.0 - 1.0 / ratio))


def _training_advice(training: TrainingConfig | None, diverged: bool) -> str:
    if diverged:
        now = "" if training is None else f" (now {training.lr:g})"
        return (
            f"the training loss diverged: lower training.lr{now} or set training.grad_clip, "
            "then check the dataset (labels, resolution, channels)."
        )
    epochs = "" if training is None else f" (now {training.epochs})"
    lr = "" if training is None else f" (now {training.lr:g})"
    return (
        f"train longer (training.epochs{epochs}); try another training.lr{lr}: lower if the "
        "loss jumped or rose, higher if it barely fell; check the dataset (labels match the "
        "images, enough images per class, the right resolution and channels)."
    )


def check_training(
    *,
    max_accuracy: float,
    min_accuracy: float,
    num_classes: int,
    settings: HealthSettings,
    training: TrainingConfig | None = None,
    diverged: bool = False,
    num_val: int | None = None,
) -> HealthReport:
    """The largest and the smallest subnet's val accuracy (%) against chance."""
    chance = chance_percent(num_classes)
    advice = _training_advice(training, diverged)
    checks = []
    for check, which, accuracy, ratio in (
        ("max_subnet_vs_chance", "largest", max_accuracy, settings.min_max_subnet_vs_chance),
        ("min_subnet_vs_chance", "smallest", min_accuracy, settings.min_min_subnet_vs_chance),
    ):
        needed = required_accuracy(ratio, num_classes)
        passed = math.isfinite(accuracy) and accuracy >= needed
        own = advice
        if check == "min_subnet_vs_chance" and not diverged:
            own = (
                f"the smallest subnets did not learn with the shared weights: {advice} A "
                "sandwich sampler (training.sampler: sandwich) trains the smallest subnet "
                "every step."
            )
        checks.append(
            HealthCheck(
                check=check,  # type: ignore[arg-type]
                gate="training",
                passed=passed,
                value=accuracy if math.isfinite(accuracy) else None,
                threshold=round(needed, 4),
                bound="min",
                unit="%",
                action=settings.on_training_failure,
                message=f"the {which} subnet reaches {accuracy:.2f}% on val, "
                f"{'at least' if passed else 'below'} {needed:.2f}% ({ratio:g}x chance: "
                f"{chance:.2f}% on {num_classes} classes)",
                advice=None if passed else own,
            )
        )
    figures: dict[str, float | int | bool | None] = {
        "max_subnet_accuracy": max_accuracy,
        "min_subnet_accuracy": min_accuracy,
        "chance": chance,
        "num_classes": num_classes,
        "num_val": num_val,
        "diverged": diverged,
    }
    return HealthReport(gate="training", checks=checks, figures=figures)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _median_check(
    accuracies: Sequence[float], num_classes: int, settings: HealthSettings, training: str
) -> HealthCheck:
    """The measured subnets' median accuracy against chance: a supernet whose extremes learned
    and whose subnets in between did not gives fronts of near-extreme subnets only."""
    ratio = settings.min_median_subnet_vs_chance
    needed = required_accuracy(ratio, num_classes)
    median = float(np.median(accuracies)) if len(accuracies) else float("nan")
    passed = math.isfinite(median) and median >= needed
    return HealthCheck(
        check="median_subnet_vs_chance",
        gate="predictor",
        passed=passed,
        value=median if math.isfinite(median) else None,
        threshold=round(needed, 4),
        bound="min",
        unit="%",
        action=settings.on_predictor_failure,
        message=f"the {len(accuracies)} subnets measured for the predictor reach a median "
        f"{median:.2f}% on holdout, {'at least' if passed else 'below'} {needed:.2f}% ({ratio:g}x "
        f"chance)",
        advice=None
        if passed
        else (
            "the subnets between the largest and the smallest did not learn with the shared "
            "weights, so the search can only find subnets near those two: train longer "
            f"(training.epochs{training}) or train more sampled subnets per step "
            "(training.num_random_subnets); a space whose layers hold separate candidate ops "
            "(nasnet, proxyless) needs the most."
        ),
    )


def check_predictor(
    *,
    kendall_tau: float | None,
    rmse: float | None,
    num_test: int,
    settings: HealthSettings,
    evaluations: int | None = None,
    subnet_accuracies: Sequence[float] | None = None,
    num_classes: int | None = None,
    epochs: int | None = None,
) -> HealthReport:
    """The predictor's holdout Kendall tau and RMSE (accuracy points) against the bounds, and,
    given the measured subnets' accuracies, their median against chance.

    An undefined tau (the holdout subnets, or the predictions, all equal) is no skill.
    """
    tau, error = _finite(kendall_tau), _finite(rmse)
    more = "" if evaluations is None else f" (now {evaluations})"
    advice = (
        f"measure more subnets for the predictor (search.evaluations{more}; its holdout had "
        f"{num_test}); if the subnets all measure about the same, the supernet cannot tell "
        "them apart: train it longer. The fronts are still measured on val, but the search "
        "they come from was guided by this predictor."
    )
    tau_ok = tau is not None and tau >= settings.min_predictor_tau
    rmse_ok = error is not None and error <= settings.max_predictor_rmse
    shown_tau = "undefined (the values do not vary)" if tau is None else f"{tau:.3f}"
    shown_rmse = "undefined" if error is None else f"{error:.2f} points"
    checks = [
        HealthCheck(
            check="predictor_kendall_tau",
            gate="predictor",
            passed=tau_ok,
            value=tau,
            threshold=settings.min_predictor_tau,
            bound="min",
            unit="",
            action=settings.on_predictor_failure,
            message=f"the predictor ranks its {num_test} holdout subnets with Kendall tau "
            f"{shown_tau}, {'at least' if tau_ok else 'below'} {settings.min_predictor_tau:g}",
            advice=None if tau_ok else advice,
        ),
        HealthCheck(
            check="predictor_rmse",
            gate="predictor",
            passed=rmse_ok,
            value=error,
            threshold=settings.max_predictor_rmse,
            bound="max",
            unit="points",
            action=settings.on_predictor_failure,
            message=f"its holdout RMSE is {shown_rmse}, "
            f"{'at most' if rmse_ok else 'above'} {settings.max_predictor_rmse:g} points",
            advice=None if rmse_ok else advice,
        ),
    ]
    figures: dict[str, float | int | bool | None] = {
        "kendall_tau": tau,
        "rmse": error,
        "num_test": num_test,
    }
    if subnet_accuracies is not None and num_classes is not None:
        now = "" if epochs is None else f" (now {epochs})"
        median = _median_check(subnet_accuracies, num_classes, settings, now)
        checks.insert(0, median)
        figures.update(median_subnet_accuracy=median.value, num_classes=num_classes)
    return HealthReport(gate="predictor", checks=checks, figures=figures)


def record(ctx: StageContext, report: HealthReport) -> None:
    """Report the gate's result (a data point, and a warning or error line per miss); raise
    ``HealthGateError`` when it fails the job."""
    ctx.metrics(
        key=HEALTH_KEY_PREFIX + report.gate,
        message=report.summary(),
        data={**report.model_dump(mode="json"), "outcome": report.outcome},
    )
    level: LogLevel = "error" if report.fatal else "warning"
    for check in report.missed:
        ctx.log(f"health check {check.check} missed: {check.message}", level=level)
    if report.fatal:
        raise HealthGateError(report.error())


def gate_training(ctx: StageContext, *, diverged: bool = False) -> None:
    """Measure the largest and smallest subnets on val from the trained supernet (BN
    recalibrated, as the search measures subnets) and compare them with chance."""
    from workers.trained import load_request

    request = ctx.request
    trained = load_request(request)
    archs = trained.space.reference_archs()
    largest, smallest = (float(a) for a in trained.measure_val([archs["max"], archs["min"]]))
    report = check_training(
        max_accuracy=largest,
        min_accuracy=smallest,
        num_classes=trained.data.num_classes,
        settings=request.health,
        training=request.training,
        diverged=diverged,
        num_val=len(trained.data.val),
    )
    record(ctx, report)


def gate_predictor(
    ctx: StageContext, report: PredictorReport, accuracies: Sequence[float], num_classes: int
) -> None:
    """Compare the predictor's holdout scores, and the measured subnets' median accuracy,
    with the job's bounds."""
    record(
        ctx,
        check_predictor(
            kendall_tau=report.kendall_tau,
            rmse=report.rmse,
            num_test=report.num_test,
            settings=ctx.request.health,
            evaluations=ctx.request.search.evaluations,
            subnet_accuracies=accuracies,
            num_classes=num_classes,
            epochs=ctx.request.training.epochs,
        ),
    )


def reports_from_points(points: list[dict[str, object] | None]) -> list[HealthReport]:
    """The gates' reports among recorded data points, in gate order; others are skipped."""
    found: dict[str, HealthReport] = {}
    for data in points:
        if not data:
            continue
        try:
            report = HealthReport.model_validate({k: v for k, v in data.items() if k != "outcome"})
        except ValueError:
            continue
        found[report.gate] = report
    return [found[gate] for gate in GATE_ORDER if gate in found]
