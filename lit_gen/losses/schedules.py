"""Schedules of the VAE's KL weight and capacity: pure functions of the training step.

- Linear KL warm-up: Bowman et al. 2016 (arXiv 1511.06349), Sønderby et al. 2016 (arXiv 1602.02282).
- Cyclical annealing: Fu et al. 2019 (arXiv 1903.10145): the weight rises linearly from 0 to β over the first
  ``ratio`` of each cycle, then stays at β until the cycle ends.
- Controlled capacity: Burgess et al. 2018 (arXiv 1804.03599): the loss is ``recon + γ·|KL - C|`` with the target
  ``C`` raised linearly from 0 to ``C_max`` nats.

``step`` counts training batches from 0; the value at step ``t`` weights the loss of batch ``t``.
"""

from __future__ import annotations

from typing import Literal

BetaSchedule = Literal["constant", "linear", "cyclical"]
BETA_SCHEDULES: tuple[str, ...] = ("constant", "linear", "cyclical")


def linear_warmup(step: int, steps: int) -> float:
    """``min(1, step / steps)``: 0 at the first step, 1 from ``steps`` on (``steps <= 0``: always 1)."""
    return 1.0 if steps <= 0 else min(1.0, step / steps)


def cyclical(step: int, cycle_steps: int, ratio: float = 0.5) -> float:
    """Fu et al.'s cyclical schedule: ``min(1, (step mod cycle_steps) / (ratio·cycle_steps))``.

    Args:
        step: training step, from 0.
        cycle_steps: length of one cycle in steps.
        ratio: the share of each cycle spent rising from 0 to 1 (0.5 in the paper).
    """
    return min(1.0, (step % cycle_steps) / (ratio * cycle_steps))


def beta_at(
    step: int,
    beta: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    cycle_steps: int = 0,
    cycle_ratio: float = 0.5,
) -> float:
    """The KL weight of training step ``step`` under ``schedule`` (``constant``, ``linear`` or ``cyclical``)."""
    if schedule == "constant":
        return beta
    if schedule == "linear":
        return beta * linear_warmup(step, warmup_steps)
    if schedule == "cyclical":
        return beta * cyclical(step, cycle_steps, cycle_ratio)
    raise ValueError(f"unknown beta_schedule {schedule!r}; choose one of {', '.join(BETA_SCHEDULES)}")


def capacity_at(step: int, capacity: float, steps: int) -> float:
    """Burgess et al.'s KL target ``C`` at ``step``: ``capacity · min(1, step / steps)`` nats."""
    return capacity * linear_warmup(step, steps)


def check_schedule(
    schedule: str, warmup_steps: int, cycle_steps: int, cycle_ratio: float, capacity: float | None, capacity_steps: int
) -> None:
    """Refuse schedule settings that cannot work, naming the fix."""
    if schedule not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta_schedule {schedule!r}; choose one of {', '.join(BETA_SCHEDULES)}")
    if schedule == "linear" and warmup_steps < 1:
        raise ValueError(f"beta_schedule='linear' needs beta_warmup_steps >= 1, got {warmup_steps}")
    if schedule == "cyclical" and cycle_steps < 1:
        raise ValueError(f"beta_schedule='cyclical' needs beta_cycle_steps >= 1 (steps per cycle), got {cycle_steps}")
    if not 0.0 < cycle_ratio <= 1.0:
        raise ValueError(f"beta_cycle_ratio must be in (0, 1], got {cycle_ratio}")
    if capacity is not None and capacity < 0:
        raise ValueError(f"capacity must be >= 0 nats (None = off), got {capacity}")
    if capacity_steps < 0:
        raise ValueError(f"capacity_steps must be >= 0, got {capacity_steps}")
