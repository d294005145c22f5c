"""Workers on many machines: attempts run by `stepledger worker` processes, through Procrastinate.

docs/workers.md says how a fleet is run and how its guarantees are kept.
"""
