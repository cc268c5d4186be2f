"""NFC reader drivers (PC/SC, nfcpy, PN532 over serial) behind one tap-event interface."""
