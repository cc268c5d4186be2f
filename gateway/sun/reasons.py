"""Machine-readable rejection reasons: the one list (docs/sun.md describes each)."""

from __future__ import annotations

BAD_LENGTH = "bad_length"
BAD_HEX = "bad_hex"
BAD_MAC = "bad_mac"
REPLAYED = "replayed"
UNKNOWN_MODE = "unknown_mode"
UID_LENGTH = "uid_length"
UNKNOWN_PROFILE = "unknown_profile"
NO_KEY = "no_key"
NO_UID = "no_uid"
NO_COUNTER = "no_counter"
UID_MISMATCH = "uid_mismatch"
UNKNOWN_RECORD = "unknown_record"
RECORD_MISMATCH = "record_mismatch"
UNKNOWN_KDF = "unknown_kdf"
MISSING_FIELD = "missing_field"
BAD_INPUT = "bad_input"
BAD_JSON = "bad_json"

REASONS: dict[str, str] = {
    BAD_LENGTH: "a field has the wrong length (PICC data 16/24, CMAC 8, file data n*16, key 16)",
    BAD_HEX: "a field that must be hexadecimal is not",
    BAD_MAC: "the SDMMAC does not match: wrong key, tampered message or clone",
    REPLAYED: "the read counter is not greater than the last accepted one for this UID",
    UNKNOWN_MODE: "mode is neither 'aes' nor 'lrp'",
    UID_LENGTH: "the PICC data tag announces a UID length other than 7 (often a wrong meta key)",
    UNKNOWN_PROFILE: "no tag profile matches the URL, or the named profile does not exist",
    NO_KEY: "no key is configured or given for this message",
    NO_UID: "counter-only PICC data and no UID from the reader",
    NO_COUNTER: "the counter is needed (file data, replay store) but was not mirrored",
    UID_MISMATCH: "the UID in the message differs from the UID the reader saw",
    UNKNOWN_RECORD: "the profile binds the record id to a UID but the record is not on record",
    RECORD_MISMATCH: "the record id is bound to another UID",
    UNKNOWN_KDF: "kdf is neither 'an10922' nor 'sdm-backend'",
    MISSING_FIELD: "a required input field is absent",
    BAD_INPUT: "an input field has the wrong type",
    BAD_JSON: "the input line is not a JSON object",
}

__all__ = ["REASONS", *[name for name in dir() if name.isupper() and name != "REASONS"]]
