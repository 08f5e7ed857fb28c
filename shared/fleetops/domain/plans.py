"""Every action as a declared plan of steps, each with its retry policy and timeout."""

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
    RESTART = "restart"
    DELETE = "delete"
    WAIT_HEALTHY = "wait_healthy"


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

    @property
    def waits(self) -> bool:
        return self.effect is Effect.WAIT_HEALTHY


@dataclass(frozen=True)
class Plan:
    action: Action
    steps: tuple[StepSpec, ...]
    # The instance's state while the operation runs, and after it succeeds.
    state_while_running: InstanceState
    state_after: InstanceState
    deadline: timedelta = timedelta(minutes=30)


_WAIT = StepSpec(
    "wait_healthy",
    Effect.WAIT_HEALTHY,
    timeout=timedelta(seconds=90),
    retry=RetryPolicy(max_attempts=1),
)

PLANS: Mapping[Action, Plan] = MappingProxyType(
    {
        Action.PROVISION: Plan(
            Action.PROVISION,
            (StepSpec("create_instance", Effect.PROVISION, timeout=timedelta(minutes=5)), _WAIT),
            InstanceState.PROVISIONING,
            InstanceState.RUNNING,
        ),
        Action.RESTART: Plan(
            Action.RESTART,
            (StepSpec("restart_instance", Effect.RESTART, timeout=timedelta(minutes=2)), _WAIT),
            InstanceState.RESTARTING,
            InstanceState.RUNNING,
        ),
        Action.DELETE: Plan(
            Action.DELETE,
            (StepSpec("delete_instance", Effect.DELETE, timeout=timedelta(minutes=5)),),
            InstanceState.DELETING,
            InstanceState.DELETED,
        ),
    }
)


def plan_for(action: Action) -> Plan | None:
    return PLANS.get(action)
