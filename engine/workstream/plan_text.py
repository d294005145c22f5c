"""The human-readable form of a Plan, as `stepledger plan` prints it."""

from __future__ import annotations

from .planning import Plan

MAX_NAMES = 12  # per wave; `--json` lists them all


def format_duration(value: float, unit: str) -> str:
    """`2m 05s`, `45.0s`, or `3 units` when no step has a known duration."""
    if unit != "s":
        return f"{value:g} unit{'s' * (value != 1)}"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def _names(ids: tuple[str, ...]) -> str:
    shown = ", ".join(ids[:MAX_NAMES])
    return shown + (f", … (+{len(ids) - MAX_NAMES} more)" if len(ids) > MAX_NAMES else "")


def format_plan(plan: Plan) -> str:
    """Waves, critical path and expected times as text."""
    unit = plan.time_unit
    show = lambda v: format_duration(v, unit)  # noqa: E731 - a local shorthand
    deps = f"{plan.dependency_count} dependenc{'y' if plan.dependency_count == 1 else 'ies'}"
    lines = [f"{plan.workstream_id}: {plan.step_count} steps, {deps}, up to {plan.worker_limit} at once"]
    sources = ", ".join(f"{n} from {k}" for k, n in plan.duration_sources.items() if n)
    lines.append(f"durations: {sources}" + (" (1 unit each)" if unit != "s" else ""))
    lines.append("")
    width = len(str(len(plan.waves)))
    for wave in plan.waves:
        lines.append(f"wave {wave.index:>{width}}  at {show(wave.start):>9}  {_names(wave.steps)}")
    lines.append("")
    lines.append(f"critical path ({show(plan.critical_path_time)}): {' → '.join(plan.critical_path)}")
    saved = plan.sequential_time - plan.parallel_time
    lines.append(
        f"expected: {show(plan.parallel_time)} in parallel vs {show(plan.sequential_time)} one after another"
        f" — {plan.saving:.0%} saved ({show(saved)})"
    )
    return "\n".join(lines)
