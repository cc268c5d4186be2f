from nfc.clf import ContactlessFrontend, RemoteTarget
from nfc.tag import tt4 as tt4

TIMEOUT_ERROR: int
RECEIVE_ERROR: int
PROTOCOL_ERROR: int

class Tag:
    @property
    def is_present(self) -> bool: ...

class TagCommandError(Exception):
    @property
    def errno(self) -> int: ...

def activate(clf: ContactlessFrontend, target: RemoteTarget) -> Tag | None: ...
