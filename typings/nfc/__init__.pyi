# Minimal stubs for nfcpy (``nfc``): only the names dockgate uses.
from nfc import clf as clf
from nfc import tag as tag
from nfc.clf import ContactlessFrontend as ContactlessFrontend
