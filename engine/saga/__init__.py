"""Rolling back a failed run: compensations in reverse order, and the log of what they did."""
