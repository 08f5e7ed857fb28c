"""Every action as a declared plan of steps, each with its retry policy and timeout.

A plan may declare a compensation: the steps that put the instance back as it
was when a step at or after `compensate_from` fails, or when the operation is
cancelled past that point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType

from fleetops.domain.model import Action, InstanceState


class Effect(StrEnum):
    """What a step asks of the world. Each is safe to repeat with the same token."""

    PROVISION = "provision"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SET_VERSION = "set_version"
    SET_SIZE = "set_size"
    SUSPEND = "suspend"
    RESUME = "resume"
    SNAPSHOT = "snapshot"
    DELETE = "delete"
    WAIT_HEALTHY = "wait_healthy"


class Target(StrEnum):
    """Which version or size a step means: the one requested, or the one before."""

    REQUESTED = "requested"
    PRIOR = "prior"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    initial_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(seconds=30)
    multiplier: float = 2.0

    def backoff(self, attempt: int, jitter: float) -> timedelta:
        """Delay before attempt `attempt + 1`; `jitter` in [0, 1) spreads the retries."""
        base = self.initial_backoff.total_seconds() * self.multiplier ** max(attempt - 1, 0)
        capped = min(base, self.max_backoff.total_seconds())
        return timedelta(seconds=capped * (0.5 + 0.5 * jitter))


@dataclass(frozen=True)
class StepSpec:
    name: str
    effect: Effect
    timeout: timedelta = timedelta(seconds=60)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # For waiting steps: the gap between two checks.
    poll_interval: timedelta = timedelta(seconds=1)
    target: Target = Target.REQUESTED

    @property
    def waits(self) -> bool:
        return self.effect is Effect.WAIT_HEALTHY


@dataclass(frozen=True)
class Plan:
    action: Action
    steps: tuple[StepSpec, ...]
    # The instance's state while the operation runs, and after it succeeds
    # (None: unchanged).
    state_while_running: InstanceState | None
    state_after: InstanceState | None
    deadline: timedelta = timedelta(minutes=30)
    compensate_from: int | None = None
    compensation: tuple[StepSpec, ...] = ()

    def spec(self, index: int) -> StepSpec:
        """The spec of step `index` of an operation: main steps, then compensation."""
        if index < len(self.steps):
            return self.steps[index]
        return self.compensation[index - len(self.steps)]


NO_RETRY = RetryPolicy(max_attempts=1)


def _wait(target: Target, timeout: timedelta = timedelta(seconds=90)) -> StepSpec:
    return StepSpec(
        "wait_healthy", Effect.WAIT_HEALTHY, timeout=timeout, retry=NO_RETRY, target=target
    )


def _step(
    name: str, effect: Effect, minutes: float = 2, target: Target = Target.REQUESTED
) -> StepSpec:
    return StepSpec(name, effect, timeout=timedelta(minutes=minutes), target=target)


_ROLLBACK_VERSION = (
    _step("stop_instance", Effect.STOP),
    _step("restore_version", Effect.SET_VERSION, target=Target.PRIOR),
    _step("start_instance", Effect.START),
    _wait(Target.PRIOR),
)
_ROLLBACK_SIZE = (
    _step("stop_instance", Effect.STOP),
    _step("restore_size", Effect.SET_SIZE, target=Target.PRIOR),
    _step("start_instance", Effect.START),
    _wait(Target.PRIOR),
)

PLANS: Mapping[Action, Plan] = MappingProxyType(
    {
        Action.PROVISION: Plan(
            Action.PROVISION,
            (_step("create_instance", Effect.PROVISION, minutes=5), _wait(Target.REQUESTED)),
            InstanceState.PROVISIONING,
            InstanceState.RUNNING,
        ),
        Action.UPGRADE: Plan(
            Action.UPGRADE,
            (
                _step("take_snapshot", Effect.SNAPSHOT, minutes=10),
                _step("stop_instance", Effect.STOP),
                _step("switch_version", Effect.SET_VERSION),
                _step("start_instance", Effect.START),
                _wait(Target.REQUESTED),
            ),
            InstanceState.UPGRADING,
            InstanceState.RUNNING,
            deadline=timedelta(minutes=45),
            compensate_from=1,
            compensation=_ROLLBACK_VERSION,
        ),
        Action.RESIZE: Plan(
            Action.RESIZE,
            (
                _step("stop_instance", Effect.STOP),
                _step("switch_size", Effect.SET_SIZE),
                _step("start_instance", Effect.START),
                _wait(Target.PRIOR),
            ),
            InstanceState.RESIZING,
            InstanceState.RUNNING,
            compensate_from=0,
            compensation=_ROLLBACK_SIZE,
        ),
        Action.RESTART: Plan(
            Action.RESTART,
            (_step("restart_instance", Effect.RESTART), _wait(Target.PRIOR)),
            InstanceState.RESTARTING,
            InstanceState.RUNNING,
        ),
        Action.SUSPEND: Plan(
            Action.SUSPEND,
            (_step("suspend_instance", Effect.SUSPEND),),
            None,
            InstanceState.SUSPENDED,
        ),
        Action.RESUME: Plan(
            Action.RESUME,
            (_step("resume_instance", Effect.RESUME), _wait(Target.PRIOR)),
            None,
            InstanceState.RUNNING,
        ),
        Action.SNAPSHOT: Plan(
            Action.SNAPSHOT,
            (_step("take_snapshot", Effect.SNAPSHOT, minutes=10),),
            None,
            None,
        ),
        Action.REPLACE: Plan(
            Action.REPLACE,
            (
                _step("delete_instance", Effect.DELETE, minutes=5),
                _step("create_instance", Effect.PROVISION, minutes=5, target=Target.PRIOR),
                _wait(Target.PRIOR),
            ),
            InstanceState.PROVISIONING,
            InstanceState.RUNNING,
        ),
        Action.DELETE: Plan(
            Action.DELETE,
            (_step("delete_instance", Effect.DELETE, minutes=5),),
            InstanceState.DELETING,
            InstanceState.DELETED,
        ),
    }
)


def plan_for(action: Action) -> Plan | None:
    return PLANS.get(action)
