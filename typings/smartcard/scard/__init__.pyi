# pyscard's SWIG wrapper of the PC/SC API. Every call returns the SCARD_* result code first;
# contexts and card handles are plain integers.

SCARD_S_SUCCESS: int
SCARD_E_CANCELLED: int
SCARD_E_NOT_TRANSACTED: int
SCARD_E_NO_READERS_AVAILABLE: int
SCARD_E_NO_SMARTCARD: int
SCARD_E_TIMEOUT: int
SCARD_E_UNKNOWN_READER: int
SCARD_W_REMOVED_CARD: int
SCARD_W_RESET_CARD: int
SCARD_SCOPE_USER: int
SCARD_SHARE_SHARED: int
SCARD_PROTOCOL_T0: int
SCARD_PROTOCOL_T1: int
SCARD_LEAVE_CARD: int
SCARD_STATE_UNAWARE: int
SCARD_STATE_CHANGED: int
SCARD_STATE_UNKNOWN: int
SCARD_STATE_UNAVAILABLE: int
SCARD_STATE_PRESENT: int
SCARD_STATE_MUTE: int

# (reader name, state) in; (reader name, event state, ATR) out
ReaderStateIn = tuple[str, int]
ReaderStateOut = tuple[str, int, list[int]]

def SCardEstablishContext(dwScope: int) -> tuple[int, int]: ...
def SCardReleaseContext(hcontext: int) -> int: ...
def SCardCancel(hcontext: int) -> int: ...
def SCardListReaders(hcontext: int, readergroups: list[str]) -> tuple[int, list[str]]: ...
def SCardGetStatusChange(
    hcontext: int, dwTimeout: int, readerstatelist: list[ReaderStateIn]
) -> tuple[int, list[ReaderStateOut]]: ...
def SCardConnect(
    hcontext: int, readername: str, dwShareMode: int, dwPreferredProtocols: int
) -> tuple[int, int, int]: ...
def SCardDisconnect(hcard: int, dwDisposition: int) -> int: ...
def SCardTransmit(hcard: int, pioSendPci: int, apducommand: list[int]) -> tuple[int, list[int]]: ...
def SCardStatus(hcard: int) -> tuple[int, str, int, int, list[int]]: ...
def SCardGetErrorMessage(lErrCode: int) -> str: ...
