"""The NTAG 424 DNA file system as NFC Forum Type 4 readers see it.

One application (DF name D2760000850101, file id E110) with three standard files: the
capability container E103, the NDEF file E104 and the proprietary file E105. The sizes and
access rights are those of a chip fresh from the factory (NT4H2421Gx data sheet, section 8).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NDEF_APP_DF_NAME = bytes.fromhex("D2760000850101")
NDEF_APP_FILE_ID = 0xE110
MASTER_FILE_ID = 0x3F00
CC_FILE_ID = 0xE103
NDEF_FILE_ID = 0xE104
PROPRIETARY_FILE_ID = 0xE105

CC_FILE_SIZE = 32
NDEF_FILE_SIZE = 256
PROPRIETARY_FILE_SIZE = 128

# Short EF identifiers usable in READ BINARY P1 (bit 8 set, SFI in bits 5..1).
SHORT_FILE_IDS = {0x01: CC_FILE_ID, 0x02: NDEF_FILE_ID, 0x03: PROPRIETARY_FILE_ID}

FREE = 0x00  # access condition "free" in the CC (NFC Forum encoding)


@dataclass(frozen=True, slots=True)
class CapabilityContainer:
    """The CC file fields a reader uses; ``to_bytes`` gives the 32-byte file content."""

    mle: int = 0x0100
    mlc: int = 0x00FF
    ndef_size: int = NDEF_FILE_SIZE
    ndef_read: int = FREE
    ndef_write: int = FREE
    proprietary_read: int = 0x82  # key 2 needed: plain reads get 6982
    proprietary_write: int = 0x83

    def to_bytes(self) -> bytes:
        body = (
            struct.pack(">HBHH", 0x0017, 0x20, self.mle, self.mlc)
            + struct.pack(
                ">BBHHBB", 0x04, 0x06, NDEF_FILE_ID, self.ndef_size, self.ndef_read, self.ndef_write
            )
            + struct.pack(
                ">BBHHBB",
                0x05,
                0x06,
                PROPRIETARY_FILE_ID,
                PROPRIETARY_FILE_SIZE,
                self.proprietary_read,
                self.proprietary_write,
            )
        )
        return body.ljust(CC_FILE_SIZE, b"\x00")
