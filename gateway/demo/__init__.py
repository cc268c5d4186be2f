"""``dockgate demo``: the whole system on one machine, with a scripted day checked step by step.

A private Mosquitto, pcscd with virtual readers, the real daemon in process, simulated
stations, scooters and tags, and a simulated backend pulling the event feed. See docs/demo.md.
``--cluster`` (``run_cluster_demo``): two ``dockgate run`` nodes on a PostgreSQL the demo
starts, taps over the broker, and the leader killed mid-day.
"""

from dockgate.gateway.demo._cluster_run import run_cluster_demo
from dockgate.gateway.demo._cluster_steps import CLUSTER_STEPS
from dockgate.gateway.demo._run import DemoOptions, run_demo
from dockgate.gateway.demo._steps import BREAKABLE, STEPS

__all__ = ["BREAKABLE", "CLUSTER_STEPS", "STEPS", "DemoOptions", "run_cluster_demo", "run_demo"]
