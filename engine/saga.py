"""Saga rollback: when a step fails for good, undo the completed steps with their compensations.

Placeholder until the saga work lands: no compensation runs and the run stays failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reactor import Reactor


def roll_back(reactor: Reactor) -> str:
    """Run the compensations of the completed steps; return the run's outcome afterwards."""
    return "failed"
