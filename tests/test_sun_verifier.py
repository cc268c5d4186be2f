"""Round trips against the simulated tag, every rejection reason, settings and secrets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dockgate.gateway.sun import REASONS, SunSettings, SunVerifier, load_profiles, load_sun_settings
from dockgate.gateway.sun.keys import make_keys
from dockgate.sim.sdm import SdmTag, TagExhausted, diversify_an10922, sdm_backend_keys

META = bytes.fromhex("00112233445566778899aabbccddeeff")
FILE = bytes.fromhex("ffeeddccbbaa99887766554433221100")
UID = bytes.fromhex("04de5f1eacc040")
PROFILES = list(load_profiles())


def verifier(mode: str | None = None, **extra: object) -> SunVerifier:
    ks = {"meta_read_key": META.hex(), "file_read_key": FILE.hex(), "mode": mode}
    return SunVerifier(SunSettings(key_sets={"default": ks}, records={"1044": UID.hex()}, **extra))


def tag(**kw: object) -> SdmTag:
    args = {"uid": UID, "meta_read_key": META, "file_read_key": FILE, "record": "1044"} | kw
    return SdmTag(**args)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    uid=st.binary(min_size=7, max_size=7),
    ctr=st.integers(min_value=0, max_value=0xFFFFFE),
    mode=st.sampled_from(["aes", "lrp"]),
    profile=st.sampled_from(PROFILES),
    data=st.binary(min_size=16, max_size=48).filter(lambda b: len(b) % 16 == 0),
)
def test_round_trip_every_profile(
    uid: bytes, ctr: int, mode: str, profile: str, data: bytes
) -> None:
    t = tag(uid=uid, mode=mode, profile=profile, read_ctr=ctr, file_data=data)
    v = verifier(mode)
    v.records["1044"] = uid.hex()
    r = v.verify_url(t.next_url(), profile=profile)
    assert r.valid, r
    assert (r.uid, r.read_ctr, r.profile) == (uid.hex(), ctr + 1, profile)
    assert r.file_data == (data.hex() if "enc" in load_profiles()[profile].fields else None)


@settings(max_examples=30, deadline=None)
@given(uid=st.binary(min_size=7, max_size=7), mode=st.sampled_from(["aes", "lrp"]))
def test_clone_with_other_keys_is_rejected(uid: bytes, mode: str) -> None:
    clone = tag(uid=uid, mode=mode).clone(file_read_key=bytes(16))
    assert clone.uid == uid
    assert verifier().verify_url(clone.next_url()).reason == "bad_mac"


def test_tampered_url_fields() -> None:
    v = verifier()
    url = tag(profile="query-picc-enc-cmac").next_url()
    enc_at = url.index("enc=") + 4
    flipped = url[:enc_at] + ("0" if url[enc_at] != "0" else "1") + url[enc_at + 1 :]
    assert v.verify_url(flipped).reason == "bad_mac"
    senzu = tag(profile="senzu-play").next_url()
    assert v.verify_url(senzu.replace("/1044@", "/1045@")).reason == "bad_mac"


def test_record_binding_by_uid() -> None:
    v = verifier()
    url = tag(profile="senzu-play-uid").next_url()
    assert v.verify_url(url, profile="senzu-play-uid").valid
    assert (
        v.verify_url(url.replace("/1044@", "/1045@"), profile="senzu-play-uid").reason
        == "unknown_record"
    )
    v.records["1045"] = "04000000000000"
    assert (
        v.verify_url(url.replace("/1044@", "/1045@"), profile="senzu-play-uid").reason
        == "record_mismatch"
    )


def test_counter_only_picc_data_uses_reader_uid() -> None:
    div = make_keys(master_key=META, kdf="an10922", kdf_suffix=b"\x30\x42\xf5")
    t = tag(mirror_uid=False, file_read_key=diversify_an10922(META, UID, b"\x30\x42\xf5"))
    url = t.next_url()
    v = verifier()
    v.key_sets["default"] = div
    ok = v.verify_url(url, reader_uid=UID)
    assert ok.valid and ok.uid == UID.hex() and ok.read_ctr == 1
    assert v.verify_url(url).reason == "no_uid"
    assert v.verify_url(url, reader_uid=bytes(7)).reason == "bad_mac"


def test_counter_only_uid_serves_counter_only_picc_data_alone() -> None:
    """``counter_only_uid`` (the play check's record UID) fills in a UID the PICC data does
    not mirror; a mirrored UID wins and is not compared with it (the caller does, after the
    MAC), unlike ``reader_uid``."""
    v = verifier()
    other = bytes.fromhex("04000000000001")
    for mode in ("aes", "lrp"):
        fields = _query_fields(tag(mode=mode).next_url())
        r = v.verify_fields(counter_only_uid=other, **fields)
        assert (r.valid, r.uid) == (True, UID.hex())
        assert v.verify_fields(reader_uid=other, **fields).reason == "uid_mismatch"
        div = make_keys(master_key=META, kdf="an10922")
        counter_only = tag(mode=mode, mirror_uid=False, file_read_key=diversify_an10922(META, UID))
        fields = _query_fields(counter_only.next_url())
        r = v.verify_fields(keys=div, counter_only_uid=UID, **fields)
        assert (r.valid, r.uid, r.read_ctr) == (True, UID.hex(), 1)
        assert v.verify_fields(keys=div, counter_only_uid=other, **fields).reason == "bad_mac"
        assert v.verify_fields(keys=div, counter_only_uid=UID[:6], **fields).reason == "uid_length"
        assert v.verify_fields(keys=div, **fields).reason == "no_uid"


def _query_fields(url: str) -> dict[str, str]:
    """picc_data and cmac of a ``query-picc-cmac`` URL (an empty MAC window)."""
    query = dict(part.split("=") for part in url.split("?", 1)[1].split("&"))
    return {"picc_data": query["picc_data"], "cmac": query["cmac"], "mac_input": ""}


def test_reader_uid_must_match_mirrored_uid() -> None:
    url = tag().next_url()
    assert verifier().verify_url(url, reader_uid=bytes(7)).reason == "uid_mismatch"
    assert verifier().verify_url(url, reader_uid=bytes(3)).reason == "uid_length"


def test_sdm_backend_provisioned_tag() -> None:
    meta, file_ = sdm_backend_keys(META, UID)
    url = tag(meta_read_key=meta, file_read_key=file_).next_url()
    v = verifier()
    v.key_sets["default"] = make_keys(master_key=META, kdf="sdm-backend")
    assert v.verify_url(url).valid


def test_next_ndef_file_layout() -> None:
    import ndef

    t = tag()
    image = t.next_ndef_file()
    nlen = int.from_bytes(image[:2], "big")
    assert nlen == len(image) - 2
    (record,) = list(ndef.message_decoder(image[2:]))
    assert verifier().verify_url(record.iri).valid and t.read_ctr == 1


def test_tag_counter_limit() -> None:
    t = tag(read_ctr=0xFFFFFE)
    assert verifier().verify_url(t.next_url()).read_ctr == 0xFFFFFF
    with pytest.raises(TagExhausted):
        t.next_url()


GOOD = {"picc_data": "EF963FF7828658A599F3041510671E88", "cmac": "94EED9EE65337086"}
ZK = make_keys(meta_read_key=bytes(16), file_read_key=bytes(16))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (GOOD | {"picc_data": "EF963FF7828658A599F3041510671E"}, "bad_length"),
        (GOOD | {"picc_data": "ZZ963FF7828658A599F3041510671E88"}, "bad_hex"),
        (GOOD | {"picc_data": "EF963FF7828658A599F3041510671E 8"}, "bad_hex"),
        (GOOD | {"cmac": "94EED9EE653370"}, "bad_length"),
        (GOOD | {"cmac": "94EED9EE65337087"}, "bad_mac"),
        (GOOD | {"mode": "des"}, "unknown_mode"),
        (GOOD | {"mode": "lrp"}, "bad_length"),
        (GOOD | {"enc_file_data": "00" * 15}, "bad_length"),
        ({"cmac": "94EED9EE65337086"}, "missing_field"),
        ({"cmac": "94EED9EE65337086", "uid": "04DE5F1EACC0", "read_ctr": "00003D"}, "bad_length"),
        ({"cmac": "94EED9EE65337086", "uid": "04DE5F1EACC040"}, "missing_field"),
        (GOOD | {"mac_input": "café"}, "bad_input"),
    ],
)
def test_reasons_for_raw_fields(fields: dict, reason: str) -> None:
    assert reason in REASONS
    r = verifier().verify_fields(keys=ZK, **fields)
    assert (r.valid, r.reason) == (False, reason)


def test_uid_length_and_no_key() -> None:
    wrong_meta = make_keys(meta_read_key=bytes(15) + b"\x01", file_read_key=bytes(16))
    assert verifier().verify_fields(keys=wrong_meta, **GOOD).reason == "uid_length"
    assert (
        verifier().verify_fields(keys=make_keys(file_read_key=bytes(16)), **GOOD).reason == "no_key"
    )
    assert SunVerifier().verify_url(tag().next_url()).reason == "no_key"


def _picc(mode: str, plain: bytes) -> bytes:
    """PICC data with an arbitrary plaintext under META (as a tag with that key would send)."""
    if mode == "aes":
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        return Cipher(algorithms.AES(META), modes.CBC(bytes(16))).encryptor().update(plain)
    from dockgate.gateway.sun.lrp import LrpCipher

    rand = bytes(range(8))
    return rand + LrpCipher(META, 0).encrypt(rand, plain)


@pytest.mark.parametrize("mode", ["aes", "lrp"])
@pytest.mark.parametrize(
    ("tag_byte", "diversified"),
    [(0xC8, False), (0xC4, True), (0x07, False), (0x07, True), (0x80, False), (0xC0, True)],
)
def test_bad_picc_data_still_computes_a_mac(
    monkeypatch: pytest.MonkeyPatch, mode: str, tag_byte: int, diversified: bool
) -> None:
    """Undecryptable PICC data (UID length not 7, nothing mirrored) costs a MAC, as a good one."""
    from dockgate.gateway.sun import core

    calls: list[tuple[str, bytes, bytes]] = []
    real = core._session_mac

    def spy(mode: str, file_key: bytes, mirrored: bytes, mac_input: bytes):
        calls.append((mode, file_key, mirrored))
        return real(mode, file_key, mirrored, mac_input)

    monkeypatch.setattr(core, "_session_mac", spy)
    if diversified:
        keys = make_keys(master_key=FILE, kdf="an10922", meta_read_key=META)
        file_key = diversify_an10922(FILE, bytes(7))
    else:
        keys, file_key = make_keys(meta_read_key=META, file_read_key=FILE), FILE
    plain = bytes([tag_byte]) + UID + b"\x05\x00\x00" + bytes(5)
    message = core.SunMessage(picc=_picc(mode, plain), cmac=bytes(8), mac_input=b"x")
    out = core.verify_message(keys, message, mode=mode)
    assert out == ("uid_length", None, None, None)
    assert calls == [(mode, file_key, bytes(10))]  # zero UID and counter, the tag's file key
    calls.clear()
    good = bytes([0xC7]) + UID + b"\x05\x00\x00" + bytes(5)  # same work for a decryptable one
    message = core.SunMessage(picc=_picc(mode, good), cmac=bytes(8))
    out = core.verify_message(keys, message, mode=mode)
    assert out[0] == "bad_mac" and len(calls) == 1


def test_unknown_profile() -> None:
    v = verifier()
    assert v.verify_url("https://example.com/nothing-here").reason == "unknown_profile"
    assert v.verify_url(tag().next_url(), profile="nope").reason == "unknown_profile"
    assert v.verify_url(12).reason == "bad_input"  # type: ignore[arg-type]


def test_enc_without_counter() -> None:
    t = tag(profile="query-picc-enc-cmac", mirror_ctr=False, file_data=b"")
    with pytest.raises(ValueError):
        t.next_url()


def test_settings_hide_keys(tmp_path) -> None:
    secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    s = SunSettings(key_sets={"k": {"meta_read_key": secret, "file_read_key": secret}})
    for text in (repr(s), str(s), repr(SunVerifier(s)), repr(SunVerifier(s).key_sets["k"])):
        assert secret not in text and secret.upper() not in text
    with pytest.raises(ValidationError) as err:
        SunSettings(key_sets={"k": {"file_read_key": secret[:-2] + "zz"}})
    assert secret[:-2] not in str(err.value)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[sun]\nprofiles = ["query-picc-cmac"]\n[sun.key_sets.default]\n'
        f'file_read_key = "{secret}"\n'
        f'meta_read_key = "{secret}"\n'
    )
    loaded = load_sun_settings(cfg)
    assert list(loaded.load_profiles()) == ["query-picc-cmac"]
    assert secret not in repr(loaded)


def test_settings_hide_long_master_keys() -> None:
    """An sdm-backend master key may be longer than 16 bytes; it stays out of every repr."""
    secret = "c0ffee" * 10 + "abcd"  # 32 bytes
    s = SunSettings(key_sets={"k": {"master_key": secret, "kdf": "sdm-backend"}})
    v = SunVerifier(s)
    for text in (repr(s), str(s), repr(v), repr(v.key_sets["k"])):
        assert secret not in text and secret[:32] not in text
    with pytest.raises(ValidationError) as err:
        SunSettings(key_sets={"k": {"master_key": secret + "0", "kdf": "sdm-backend"}})
    assert secret[:32] not in str(err.value)


def test_settings_reject_bad_profiles(tmp_path) -> None:
    with pytest.raises(ValueError):
        SunSettings(profiles=["missing"]).load_profiles()
    with pytest.raises(ValueError):
        SunSettings(extra_profiles={"x": {"template": "{base}?p={picc_data}"}}).load_profiles()
    with pytest.raises(ValidationError):
        SunSettings(key_sets={"k": {"master_key": "00" * 16}})
