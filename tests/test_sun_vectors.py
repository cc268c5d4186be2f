"""Published vectors: AN12196 (SUN), RFC 4493 (CMAC), AN12304 (LRP), AN10922, sdm-backend."""

from __future__ import annotations

import pytest

from dockgate.gateway.sun import SunSettings, SunVerifier
from dockgate.gateway.sun._aes import FixedKeyCmac, aes_cmac
from dockgate.gateway.sun.core import SunMessage, verify_message
from dockgate.gateway.sun.kdf import an10922_aes128, sdm_backend_meta_key, sdm_backend_tag_key
from dockgate.gateway.sun.keys import make_keys
from dockgate.gateway.sun.lrp import LrpCipher, generate_plaintexts, generate_updated_keys

h = bytes.fromhex
ZERO = bytes(16)


def test_an12196_sun_example() -> None:
    zero = "0" * 32
    v = SunVerifier(
        SunSettings(key_sets={"default": {"meta_read_key": zero, "file_read_key": zero}})
    )
    r = v.verify_fields(picc_data="EF963FF7828658A599F3041510671E88", cmac="94EED9EE65337086")
    assert r.valid and r.reason is None
    assert r.uid == "04de5f1eacc040" and r.read_ctr == 61


def test_an12196_wrong_cmac_fails() -> None:
    keys = make_keys(meta_read_key=ZERO, file_read_key=ZERO)
    message = SunMessage(picc=h("EF963FF7828658A599F3041510671E88"), cmac=h("94EED9EE65337087"))
    out = verify_message(keys, message, mode=None)
    assert out[0] == "bad_mac"


RFC4493_KEY = h("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MSG = h(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)


@pytest.mark.parametrize(
    ("length", "mac"),
    [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ],
)
def test_rfc4493_cmac(length: int, mac: str) -> None:
    assert aes_cmac(RFC4493_KEY, RFC4493_MSG[:length]).hex() == mac
    fixed = FixedKeyCmac(RFC4493_KEY)  # one block: E_K(M xor K1) on a cached context
    assert fixed.mac(RFC4493_MSG[:length]).hex() == mac
    assert fixed.mac(RFC4493_MSG[:length]).hex() == mac  # the copied Rust context is reusable
    if length == 16:
        assert fixed.mac_block(RFC4493_MSG[:16]).hex() == mac


def test_an12304_plaintexts_and_updated_keys() -> None:
    key = h("567826B8DA8E768432A9548DBE4AA3A0")
    p = generate_plaintexts(key)
    assert p[0] == h("AC20D39F5341FE98DFCA21DA86BA7914")
    assert p[15] == h("71B444AF257A93215311D758DD333247")
    uk = generate_updated_keys(key)
    assert uk[0] == h("163D14ED24ED935373568EC521E96CF4")
    assert uk[2] == h("FE30AB50467E61783BFE6B5E0560160E")


@pytest.mark.parametrize(
    ("key", "u", "x", "final", "out"),
    [
        ("567826B8DA8E768432A9548DBE4AA3A0", 2, "1359", True, "1ba2c0c578996bc497dd181c6885a9dd"),
        ("88B95581002057A93E421EFE4076338B", 2, "77299D", True, "e9c04556a214ac3297b83e4bdf46f142"),
        (
            "9AFF3EF56FFEC3153B1CADB48B445409",
            3,
            "4B073B247CD48F7E0A",
            False,
            "909415e5c8be77563050f2227e17c0e4",
        ),
    ],
)
def test_an12304_eval_lrp(key: str, u: int, x: str, final: bool, out: str) -> None:
    assert LrpCipher(h(key), u).eval(h(x), final=final).hex() == out


def test_an12304_eval_memo_gives_same_result() -> None:
    c = LrpCipher(h("567826B8DA8E768432A9548DBE4AA3A0"), 0, memo_size=16)
    plain = c.eval_hex("0123456789abcdef")
    assert c.eval_hex("0123456789abcdef", memo=3) == plain
    assert c.eval_hex("0123456789abcdef", memo=3) == plain  # from the memo


def test_an12304_lricb() -> None:
    key = h("E0C4935FF0C254CD2CEF8FDDC32460CF")
    padded = h("012D7F1653CAF6503C6AB0C1010E8CB0") + b"\x80" + bytes(15)
    ct = h("FCBBACAA4F29182464F99DE41085266F480E863E487BAAF687B43ED1ECE0D623")
    assert LrpCipher(key).encrypt(h("C3315DBF"), padded) == ct
    assert LrpCipher(key).decrypt(h("C3315DBF"), ct) == padded


@pytest.mark.parametrize(
    ("key", "msg", "mac"),
    [
        ("8195088CE6C393708EBBE6C7914ECB0B", "BBD5B85772C7", "AD8595E0B49C5C0DB18E77355F5AAFF6"),
        (
            "E2F84A0B0AF40EFEB3EEA215A436605C",
            "8BF1DDA9FE445560A4F4EB9CE0",
            "D04382DF71BC293FEC4BB10BDB13805F",
        ),
        (
            "5AA9F6C6DE5138113DF5D6B6C77D5D52",
            "A4434D740C2CB665FE5396959189383F",
            "8B43ADF767E46B692E8F24E837CB5EFC",
        ),
    ],
)
def test_an12304_cmac_lrp(key: str, msg: str, mac: str) -> None:
    assert LrpCipher(h(key)).cmac(h(msg)) == h(mac)


def test_lrp_sun_message() -> None:
    """NTAG 424 DNA LRP-mode SUN (sdm-backend's example, MAC window from the PICC data)."""
    keys = make_keys(meta_read_key=ZERO, file_read_key=ZERO)
    msg = "AAE1508939ECF6FF26BCE407959AB1A5EC022819A35CD293x5E3DB82C19E3865F"
    message = SunMessage(picc=h(msg[:48]), cmac=h(msg[49:]), mac_input=msg[:49].encode())
    out = verify_message(keys, message, mode="lrp")
    assert out == (None, h("042E1D222A6380"), 106, None)


def test_lrp_sun_message_with_file_data() -> None:
    keys = make_keys(meta_read_key=ZERO, file_read_key=ZERO)
    picc, enc, cmac = (
        "65628ED36888CF9C84797E43ECACF114C6ED9A5E101EB592",
        "4ADE304B5AB9474CB40AFFCAB0607A85",
        "87E287E8135BFC06",
    )
    window = f"any.domain/?m={picc}x{enc}x".encode()
    message = SunMessage(picc=h(picc), enc=h(enc), cmac=h(cmac), mac_input=window)
    out = verify_message(keys, message, mode=None)
    assert out == (None, h("042E1D222A6380"), 123, b"0102030400000000")


def test_an10922_aes128_example() -> None:
    m = h("04782E21801D80") + h("3042F5") + h("4E585020416275")
    assert an10922_aes128(h("00112233445566778899AABBCCDDEEFF"), m) == h(
        "A8DD63A3B89D54B37CA802473FDA9175"
    )


def test_an10922_rejects_bad_input_length() -> None:
    with pytest.raises(ValueError):
        an10922_aes128(ZERO, b"")
    with pytest.raises(ValueError):
        an10922_aes128(ZERO, bytes(32))


@pytest.mark.parametrize(
    ("master", "meta", "uid", "key_no", "tag_key"),
    [
        (
            "C9EB67DF090AFF47C3B19A2516680B9D",
            "a13086f194d7bdfd108dd11716ea2bdf",
            "010203040506AB",
            1,
            "f18cdd9389d47ae7ab381e80e5ab6fe3",
        ),
        (
            "C9EB67DF090AFF47C3B19A2516680B9D",
            "a13086f194d7bdfd108dd11716ea2bdf",
            "03030303030303",
            2,
            "85f7cc459a5b4b2f5d1a5019ded61c88",
        ),
        (
            "B95F4C27E3D0BC333792EA968545217F",
            "3a553c40846fda656faa0fce4f45fdbd",
            "05050505050505",
            2,
            "89ae686de793fdf48057ee6e78505cfc",
        ),
        (
            "00000000000000000000000000000000",
            "00000000000000000000000000000000",
            "05050505050505",
            2,
            "00000000000000000000000000000000",
        ),
    ],
)
def test_sdm_backend_kdf(master: str, meta: str, uid: str, key_no: int, tag_key: str) -> None:
    assert sdm_backend_meta_key(h(master)).hex() == meta
    assert sdm_backend_tag_key(h(master), h(uid), key_no).hex() == tag_key
