"""The ``dockgate run`` daemon: settings, supervision and wiring of the parts."""
