"""The gateway's MQTT v5 driver for stations and scooters."""
