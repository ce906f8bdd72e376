"""How long database calls may wait, as defaults for both the engine (``db``) and the
settings. No SQLAlchemy here: the runner installs the shared package without its ``db``
extra and still reads the shared settings."""

# Seconds a writer waits for SQLite's lock (or a PostgreSQL row's) before it gives up
# (MINITOWER_DB_BUSY_TIMEOUT).
DEFAULT_BUSY_TIMEOUT = 30.0
# PostgreSQL cancels a statement running longer than this (MINITOWER_DB_STATEMENT_TIMEOUT):
# long enough for a prune's deletes, short enough that a stuck query frees its connection.
DEFAULT_STATEMENT_TIMEOUT = 300.0
# Statements slower than this are logged (MINITOWER_SLOW_QUERY_THRESHOLD).
DEFAULT_SLOW_QUERY_THRESHOLD = 0.5
