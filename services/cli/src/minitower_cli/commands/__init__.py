"""The commands, one module per area; main.py puts them together."""
