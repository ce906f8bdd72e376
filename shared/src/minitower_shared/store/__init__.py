"""Store functions: take a session, return objects, never commit.

The caller (a route, or the reaper's tick) owns the transaction. Every state change is a
conditional UPDATE on the expected status; a transition that loses its race changes
nothing and is reported through the return value, never by an exception.
"""
