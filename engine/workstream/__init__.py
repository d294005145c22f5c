"""Workstream files: load, validate, plan and draw them.

`load_workstream(path)` gives the resolved, immutable model of engine/model.py or raises
`WorkstreamInvalid` listing every problem; `plan()` simulates the schedule; `render_graph()` draws it.
"""

from __future__ import annotations

from .graph import CycleError, find_cycle, find_cycles, format_cycle, topological_order
from .loading import load_workstream, validate_problems, workstream_from_data
from .plan_text import format_duration, format_plan
from .planning import Plan, ScheduledStep, Wave, plan
from .problems import Problem, ToolsUnavailable, WorkstreamInvalid
from .rendering import FORMATS, GraphvizMissing, render_graph, to_dot, to_mermaid
from .schema import generate_schema, json_schema
from .serialization import workstream_from_dict, workstream_to_dict
from .tools import check_tools_or_raise, tool_problems

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
