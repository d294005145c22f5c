"""The `stepledger` command line."""

import gc

from . import code_cache

# A command imports big libraries and builds large, long-lived object graphs (a run's events, its
# workstream) that the cycle collector would scan again and again while they grow. Fewer young
# collections make start-up and resume measurably faster (docs/performance.md);
# reference counting still frees everything that is not in a cycle.
gc.set_threshold(50_000, 20, 100)
# The code compiled for every dataclass a command imports is kept between commands (code_cache.py).
code_cache.install()
