"""Driving a run: starting and resuming it, its lease, operator interventions, checks before it starts."""
