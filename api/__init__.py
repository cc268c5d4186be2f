"""The gateway's local HTTP API (FastAPI) through which the fleet backend syncs."""
