"""stepledger: a crash-safe orchestrator for workstreams (engine, events, store and cli are its parts)."""
