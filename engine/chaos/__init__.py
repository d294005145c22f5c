"""`stepledger chaos`: a user's own workstream run again and again in scratch copies, its
orchestrator killed by SIGKILL at named points and random instants, resumed to the end, and every
run checked against the engine's promises (docs/crash-safety.md#check-your-own-workstream).

- `points.py`: the kill points a user may name, and which of them a workstream can reach;
- `plan.py`: the seeded plan of iterations (pure: `--dry-run` prints it, a violation's replay
  command names one iteration of it);
- `stubs.py`: `--shell-stub`, each step's task replaced by a stub of about its duration;
- `scratch.py`: the copies of the working directory the runs happen in;
- `processes.py`: the `stepledger` processes of an iteration, killed and awaited;
- `driver.py`: one iteration, from the copy to the run's end;
- `side_effects.py`: the side-effect log steps write, read back;
- `checks.py`: what each iteration must show, compared with an uninterrupted run;
- `report.py`: the tally and the violations, as a table or one JSON object;
- `campaign.py`: the whole command — the uninterrupted run, then every iteration.
"""
