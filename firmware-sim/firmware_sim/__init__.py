"""Faithful simulators of dockgate's hardware: NTAG 424 DNA tags, readers, stations, scooters.

They speak only the protocols real devices speak (ISO 7816-4 over vpcd, NFC-A over nfcpy's
UDP link, PN532 frames over a serial line, MQTT v5), so the gateway cannot tell them apart
from hardware.
"""
