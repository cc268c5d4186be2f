"""``dockgate demo``: the whole system on one machine, with a scripted day checked step by step.

A private Mosquitto, pcscd with virtual readers, the real daemon in process, simulated
stations, scooters and tags, and a simulated backend pulling the event feed. See docs/demo.md.
"""

from dockgate.gateway.demo._run import DemoOptions, run_demo
from dockgate.gateway.demo._steps import BREAKABLE, STEPS

__all__ = ["BREAKABLE", "STEPS", "DemoOptions", "run_demo"]
