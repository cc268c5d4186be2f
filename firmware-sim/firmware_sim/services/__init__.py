"""Private instances of the external services (Mosquitto, pcscd, socat, VictoriaMetrics).

Tests, benchmarks and the demo start these on loopback and on free ports, and stop them.
"""

from dockgate.sim.services.process import ManagedProcess, ServiceError, free_port, wait_for_port

__all__ = ["ManagedProcess", "ServiceError", "free_port", "wait_for_port"]
