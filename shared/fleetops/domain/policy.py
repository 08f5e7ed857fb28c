"""Which operations wait for a person's approval, and for how long."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from fleetops.domain.model import Action, frozen_map


@dataclass(frozen=True)
class ApprovalPolicy:
    """By default: every delete, and any action on an instance labelled `tier: enterprise`."""

    actions: frozenset[Action] = frozenset({Action.DELETE})
    labels: Mapping[str, str] = field(default_factory=lambda: frozen_map({"tier": "enterprise"}))
    timeout: timedelta = timedelta(hours=24)

    def why_required(self, action: Action, labels: Mapping[str, str]) -> str | None:
        """The reason approval is needed, or None."""
        if action in self.actions:
            return f"policy: every {action.value} needs an approval"
        for key, value in self.labels.items():
            if labels.get(key) == value:
                return f"policy: any action on instances labelled {key}: {value} needs an approval"
        return None


NO_APPROVALS = ApprovalPolicy(actions=frozenset(), labels=frozen_map({}))
