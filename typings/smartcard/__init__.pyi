# Minimal stubs for pyscard (``smartcard``): only the names dockgate uses.
