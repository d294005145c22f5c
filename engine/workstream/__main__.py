"""`python -m stepledger.engine.workstream` prints the generated JSON Schema (to refresh schema.json)."""

from stepledger.engine.workstream.schema import schema_text

print(schema_text(), end="")
