"""dockgate's daemon core: SUN crypto, taps, rules, state and sync.

The core never imports a transport library (MQTT, PC/SC, nfcpy, serial): those live in
``drivers``. Pure parts (crypto, rules) take their inputs and an injected clock and return
decisions, so the daemon, the CLI and the API share them.
"""
