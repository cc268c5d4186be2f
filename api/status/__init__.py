"""The site status page: an offline SVG map of the site with live vehicles, alerts and taps.

``status_router(snapshot)`` serves the page at ``/status`` and the live data at
``/status/snapshot`` (both need a ``read`` token: ``/status?private_token=...``), and a public
view without serials, trips or chip UIDs at ``/status/public`` (``public_view``); ``snapshot``
is a callable the daemon provides that returns the current picture as plain JSON-able data
(``dockgate.gateway.daemon.snapshot`` builds it). No tiles,
no CDN: the page is one HTML file with its script, so it works on a station computer with no
network.
"""

from dockgate.api.status.router import SnapshotProvider, public_view, status_router

__all__ = ["SnapshotProvider", "public_view", "status_router"]
