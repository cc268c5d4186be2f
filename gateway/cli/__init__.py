"""The ``dockgate`` command line: one typer app with a sub-app per area.

Sub-app modules keep their module-level imports light (typer only) and import the heavy
parts inside their commands, so that ``dockgate tag verify`` does not pay for FastAPI or
shapely at start-up.
"""

from dockgate.gateway.cli.app import app, main

__all__ = ["app", "main"]
