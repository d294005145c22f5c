"""Runs attempts of steps in a bounded pool of long-lived worker processes.

Import from the submodules (`spec`, `pool`, `recovery`, `files`): this package's __init__ stays
empty because every worker process imports it, and a worker must start in a few tens of ms.
"""
