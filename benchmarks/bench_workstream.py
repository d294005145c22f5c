"""Time load + validate + plan of a random 10,000-step workstream (about 3 dependencies a step).

Run: `.venv/bin/python benchmarks/bench_workstream.py [--steps N] [--deps D] [--seed S]`.
Every step has its own file in files_scope, plus one file shared by a chain of steps, so the
shared-file rule does real work without reporting conflicts.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from stepledger.engine.workstream import load_workstream, plan, validate_problems


def random_workstream(steps: int, deps: int, seed: int) -> dict[str, Any]:
    """A random DAG: each step depends on up to `deps` earlier steps, mostly near it."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(steps):
        window = range(max(0, i - 200), i)
        chosen = rng.sample(window, min(deps, len(window)))
        out.append(
            {
                "id": f"step-{i:05d}",
                "tool": "shell",
                "tasks": [f"echo {i}"],
                "depends_on": [f"step-{j:05d}" for j in sorted(chosen)],
                "files_scope": [f"src/module_{i}.py"] + (["CHANGELOG.md"] if i % 50 == 0 else []),
                "acceptance_tests": ["true"],
                "estimated_duration": rng.randint(1, 120),
            }
        )
    # Steps sharing CHANGELOG.md form a chain, so they can never run at the same time.
    for i in range(50, steps, 50):
        out[i]["depends_on"].append(f"step-{i - 50:05d}")
    return {"id": "ws-bench", "steps": out, "execution": {"max_workers": 8}}


def main() -> None:
    """Generate, time each phase, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--deps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    data = random_workstream(args.steps, args.deps, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.json"
        path.write_text(json.dumps(data))
        t0 = time.perf_counter()
        ws = load_workstream(path)
        t1 = time.perf_counter()
        _, problems = validate_problems(path, check_tools=False)
        t2 = time.perf_counter()
        result = plan(ws)
        t3 = time.perf_counter()
    edges = sum(len(s.requires) for s in ws.steps)
    assert not problems, problems[:3]
    print(f"{len(ws.steps)} steps, {edges} dependencies")
    print(f"load (parse + check + build + rules): {(t1 - t0) * 1000:7.1f} ms")
    print(f"validate again (all rules):           {(t2 - t1) * 1000:7.1f} ms")
    print(f"plan (simulate + critical path):      {(t3 - t2) * 1000:7.1f} ms")
    print(f"load + plan:                          {(t1 - t0 + t3 - t2) * 1000:7.1f} ms")
    print(
        f"plan: {len(result.waves)} waves, critical path {len(result.critical_path)} steps, "
        f"{result.parallel_time:.0f}s parallel vs {result.sequential_time:.0f}s sequential"
    )


if __name__ == "__main__":
    main()
