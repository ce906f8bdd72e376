"""``minitower``: MiniTower's command line, a client of the HTTP API only."""

__version__ = "0.1.0"
