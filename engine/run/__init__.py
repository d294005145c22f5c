"""A run's reactor and what it decides: lifecycle, failure verdicts, capacity, orphans, diagnostics."""
