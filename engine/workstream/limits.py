"""The bounds stepledger puts on its input, in one place (docs/workstreams.md, "Limits", lists them).

Each keeps a hostile or mistyped file from turning into unbounded work: a pool of a billion
workers, a YAML alias bomb, nesting the parser cannot climb out of, a regular expression that
backtracks for hours inside the reactor.
"""

from __future__ import annotations

MAX_WORKERS = 256
"""`execution.max_workers`, `step_groups[].max_workers` and `--max-workers` (one process each)."""

MAX_FILE_BYTES = 10 * 1024 * 1024
"""A workstream file's size; a 10,000-step workstream is about 3 MB."""

MAX_ALIAS_VALUES = 1_000_000
"""Values a YAML file may hold once its aliases (`*name`) are expanded, counting each use anew."""

MAX_NESTING = 100
"""Lists and objects inside one another; real workstreams nest under 10 deep."""

MAX_MATRIX_STEPS = 10_000
"""Steps a file's `matrix` blocks may expand into, all together (each combination is one step)."""

MAX_FAN_OUT = 10_000
"""A `for_each` step's `max_fan_out` (each item is one step, made while the run goes on)."""

DEFAULT_FAN_OUT = 1_000
"""`max_fan_out` when the step does not set it: a longer list fails the step instead of expanding."""

MAX_SECONDS = 100_000_000.0
"""Timeouts and delays (about three years); larger values overflow the clocks they are added to."""

MAX_COUNT = 1_000_000
"""Attempts, error repeats and compensation retries."""

PATTERN_TIMEOUT_S = 1.0
"""How long one `error_patterns` regex may search a failure's output before it counts as no match."""

PATH_MAX_BYTES = 4095
NAME_MAX_BYTES = 255
"""A step's `cwd`: the whole path and each of its names, as Linux file systems allow them."""
