"""``python -m gateway.cli``: the same as the ``dockgate`` console script."""

from gateway.cli.app import main

main()
