"""Messages posted by the planning worker (a thread) to the app."""

from __future__ import annotations

from textual.message import Message

from advisor.models import Plan


class PlanReady(Message):
    """A new plan for the inputs of generation ``generation`` (older generations are dropped)."""

    def __init__(self, plan: Plan, generation: int, elapsed_s: float) -> None:
        super().__init__()
        self.plan = plan
        self.generation = generation
        self.elapsed_s = elapsed_s


class PlanFailed(Message):
    """The inputs of ``generation`` are invalid: ``errors`` maps a field id ('' = general) to its reason."""

    def __init__(self, errors: dict[str, str], generation: int) -> None:
        super().__init__()
        self.errors = errors
        self.generation = generation
