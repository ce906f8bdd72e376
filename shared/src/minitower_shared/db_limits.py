"""How long database calls may wait, as defaults for both the engine (``db``) and the
settings. No SQLAlchemy here: the runner installs the shared package without its ``db``
extra and still reads the shared settings."""

# Seconds a writer waits for SQLite's lock before "database is locked"
# (MINITOWER_DB_BUSY_TIMEOUT).
DEFAULT_BUSY_TIMEOUT = 30.0
# Statements slower than this are logged (MINITOWER_SLOW_QUERY_THRESHOLD).
DEFAULT_SLOW_QUERY_THRESHOLD = 0.5
