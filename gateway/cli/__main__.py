"""``python -m dockgate.gateway.cli``: the same as the ``dockgate`` console script."""

from dockgate.gateway.cli.app import main

main()
