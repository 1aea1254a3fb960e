"""The database, the only SQL: `schema` (migrations, opening a connection, `_explain`),
`reader` (`StoreReader`, read-only, for the CLI, the zygote's children and the playlist thread)
and `writer` (`StoreWriter`, the daemon's one writer).

Nothing is re-exported here: a caller imports the side it needs, so that who may write is
visible in the imports (tests/test_layers.py holds it).
"""
