"""The site status page: an offline SVG map of the site with live vehicles, alerts and taps.

``status_router(snapshot)`` serves the page at ``/status`` and the live data at
``/status/snapshot``; ``snapshot`` is a callable the daemon provides that returns the current
picture as plain JSON-able data (see ``docs/status-page.md``). No tiles, no CDN: the page is one
HTML file with its script, so it works on a station computer with no network.
"""

from dockgate.api.status.router import SnapshotProvider, status_router

__all__ = ["SnapshotProvider", "status_router"]
