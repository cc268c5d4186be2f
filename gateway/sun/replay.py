"""Replay protection for SUN messages: the last accepted read counter per UID.

The counters are part of the gateway's state (``dockgate.gateway.store``, table
``sun_counters``, in the one schema history): ``ReplayStore(store.db)`` joins the gateway's
database, ``ReplayStore(path)`` opens a file of its own (the CLI's ``--state FILE``; a replay
file of an earlier version opens too, its counters kept).
"""

from dockgate.gateway.store import ReplayStore

__all__ = ["ReplayStore"]
