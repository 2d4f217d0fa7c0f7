"""The store: every message's row is the truth. ``sqlite/`` is the embedded backend."""
