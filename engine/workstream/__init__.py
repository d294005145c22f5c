"""Workstream files: load, validate, plan and draw them.

`load_workstream(path)` gives the resolved, immutable model of engine/workstream/model.py or raises
`WorkstreamInvalid` listing every problem; `plan()` simulates the schedule; `render_graph()` draws it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .graph import CycleError, find_cycle, find_cycles, format_cycle, topological_order
    from .loading import load_with_warnings, load_workstream, validate_problems, workstream_from_data
    from .plan_text import format_duration, format_plan
    from .planning import Plan, ScheduledStep, Wave, plan
    from .problems import Problem, ToolsUnavailable, WorkstreamInvalid
    from .rendering import FORMATS, GraphvizMissing, render_graph, to_dot, to_mermaid
    from .schema import generate_schema, json_schema
    from .serialization import workstream_from_dict, workstream_to_dict
    from .tools import check_tools_or_raise, tool_problems

# Each name is imported from its module on first use (PEP 562): recording or resuming a run needs
# only `serialization`, and importing YAML, the rules, the planner and the renderer is not free.
_EXPORTS = {
    "CycleError": "graph",
    "FORMATS": "rendering",
    "GraphvizMissing": "rendering",
    "Plan": "planning",
    "Problem": "problems",
    "ScheduledStep": "planning",
    "ToolsUnavailable": "problems",
    "Wave": "planning",
    "WorkstreamInvalid": "problems",
    "check_tools_or_raise": "tools",
    "find_cycle": "graph",
    "find_cycles": "graph",
    "format_cycle": "graph",
    "format_duration": "plan_text",
    "format_plan": "plan_text",
    "generate_schema": "schema",
    "json_schema": "schema",
    "load_with_warnings": "loading",
    "load_workstream": "loading",
    "plan": "planning",
    "render_graph": "rendering",
    "to_dot": "rendering",
    "to_mermaid": "rendering",
    "tool_problems": "tools",
    "topological_order": "graph",
    "validate_problems": "loading",
    "workstream_from_data": "loading",
    "workstream_from_dict": "serialization",
    "workstream_to_dict": "serialization",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "FORMATS",
    "CycleError",
    "GraphvizMissing",
    "Plan",
    "Problem",
    "ScheduledStep",
    "ToolsUnavailable",
    "Wave",
    "WorkstreamInvalid",
    "check_tools_or_raise",
    "find_cycle",
    "find_cycles",
    "format_cycle",
    "format_duration",
    "format_plan",
    "generate_schema",
    "json_schema",
    "load_with_warnings",
    "load_workstream",
    "plan",
    "render_graph",
    "to_dot",
    "to_mermaid",
    "tool_problems",
    "topological_order",
    "validate_problems",
    "workstream_from_data",
    "workstream_from_dict",
    "workstream_to_dict",
]
