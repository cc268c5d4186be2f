"""A simulated tag on pcscd's virtual reader (vsmartcard-vpcd).

The card is a TCP client of the vpcd driver inside pcscd: connecting is "tag presented",
closing is "tag removed". Each message both ways is a 2-byte big-endian length and a payload;
a 1-byte payload from vpcd is a control code (0 power off, 1 power on, 2 reset, 4 "send your
ATR"), a longer one is a command APDU answered with the response APDU. vpcd writes length and
body separately, so the socket needs TCP_NODELAY and TCP_QUICKACK (re-armed after every read)
or each APDU waits ~40 ms for a delayed ACK.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Protocol, Self

log = logging.getLogger(__name__)

VPCD_DEFAULT_PORT = 35963
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class VpcdTag(Protocol):
    """What vpcd needs from a tag (``dockgate.sim.ntag424.Ntag424Tag`` fits)."""

    atr: bytes

    def transceive(self, apdu: bytes) -> bytes: ...

    def reset(self) -> None: ...


class VpcdCard:
    """Presents ``tag`` on the vpcd reader at ``host:port`` while inserted.

    ``insert()`` connects and serves in a daemon thread; ``remove()`` closes the link. A tag
    that raises ``TagRemovedError`` (the removal fault) closes the link itself.
    """

    def __init__(self, tag: VpcdTag, host: str = "127.0.0.1", port: int = VPCD_DEFAULT_PORT):
        self.tag = tag
        self.host, self.port = host, port
        self.apdus = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.removed = threading.Event()
        self.removed.set()

    @property
    def present(self) -> bool:
        return not self.removed.is_set()

    def insert(self, timeout: float = 5.0) -> None:
        """Connect to vpcd ("tag presented"); raises OSError if nothing listens."""
        if self.present:
            return
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tag.reset()
        with self._lock:
            self._sock = sock
            self.removed.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name=f"vpcd-card-{self.port}", daemon=True
        )
        self._thread.start()

    def remove(self, timeout: float = 5.0) -> None:
        """Close the link ("tag removed") and wait for the serving thread to end."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.removed.set()

    def __enter__(self) -> Self:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- serving ---------------------------------------------------------------------------
    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                payload = self._recv_message(sock)
                if payload is None:
                    break
                reply = self._answer(payload)
                if reply is None:
                    if len(payload) > 1:  # the tag left the field mid-exchange
                        break
                    continue
                sock.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError as exc:
            log.debug("vpcd link to port %d ended: %s", self.port, exc)
        finally:
            with self._lock:
                if self._sock is sock:
                    self._sock = None
            with contextlib.suppress(OSError):
                sock.close()
            self.removed.set()

    def _answer(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            code = payload[0]
            if code == CTRL_ATR:
                return self.tag.atr
            if code in (CTRL_OFF, CTRL_ON, CTRL_RESET):
                self.tag.reset()
            return None
        self.apdus += 1
        try:
            return self.tag.transceive(payload)
        except Exception as exc:  # TagRemovedError, or a tag bug: either way the card is gone
            log.debug("tag left the field: %s", type(exc).__name__)
            return None

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        if _QUICKACK is not None:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return bytes(buf)

    def _recv_message(self, sock: socket.socket) -> bytes | None:
        head = self._recv_exact(sock, 2)
        if head is None:
            return None
        size = int.from_bytes(head, "big")
        if size == 0:
            return b""
        return self._recv_exact(sock, size)
