"""Transports: one module (or package) per way of reaching hardware.

Each driver implements a small interface and hands out typed events; ``gateway`` consumes
those events and never imports the transport libraries itself.
"""
