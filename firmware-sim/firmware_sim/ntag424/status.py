"""ISO 7816-4 and native status words the simulated NTAG 424 DNA answers with."""

from __future__ import annotations

OK = b"\x90\x00"
EOF_BEFORE_LE = b"\x62\x82"  # end of file reached before Le bytes were read
WRONG_LENGTH = b"\x67\x00"
LOGICAL_CHANNEL_NOT_SUPPORTED = b"\x68\x81"
SECURITY_NOT_SATISFIED = b"\x69\x82"
NO_CURRENT_EF = b"\x69\x86"
FUNCTION_NOT_SUPPORTED = b"\x6a\x81"
FILE_NOT_FOUND = b"\x6a\x82"
WRONG_P1P2 = b"\x6a\x86"
WRONG_OFFSET = b"\x6b\x00"
INS_NOT_SUPPORTED = b"\x6d\x00"
CLA_NOT_SUPPORTED = b"\x6e\x00"

# Native (DESFire-style) status bytes, wrapped as 91 xx in ISO framing.
NATIVE_OK = 0x00
NATIVE_ADDITIONAL_FRAME = 0xAF
NATIVE_ILLEGAL_COMMAND = 0x1C
NATIVE_LENGTH_ERROR = 0x7E
