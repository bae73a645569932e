"""Signal types: vocabulary, validation, canonical forms and matching indexes.

Pure code: nothing here imports FastAPI, SQLModel or httpx.

- `vocab`        the controlled vocabularies (types, categories, indicators, TLP, ...)
- `types`        one module per family of types; `types.canonicalize(...)` is the entry point
- `identifiers`  client-side normalisation and keyed hashing of raw identifiers
"""
