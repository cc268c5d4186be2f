"""Transports that put a simulated tag in front of a real reader stack (vpcd, nfcpy, PN532)."""

from dockgate.sim.transports.vpcd import VpcdCard

__all__ = ["VpcdCard"]
