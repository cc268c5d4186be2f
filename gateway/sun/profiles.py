"""Tag profiles: where the SUN fields sit in a scanned URL and which window is MACed.

A profile is a URL template with placeholders:

- ``{base}``: any ``http(s)://host/path`` prefix (not checked);
- ``{picc_data}``: encrypted PICC data (hex); ``{enc}``: SDMENCFileData (hex);
- ``{cmac}``: the truncated SDMMAC (hex); ``{record}``: the NFC platform's record id;
- ``{uid}``, ``{ctr}``: plain mirrored UID and read counter (hex text).

``mac_from`` names where the MAC window starts; it always ends right before ``{cmac}``
(exactly like SDMMACInputOffset .. SDMMACOffset on the chip). ``none`` is an empty window,
``host`` starts right after ``://``, any placeholder name starts where that field starts.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

PLACEHOLDERS = frozenset({"base", "picc_data", "enc", "cmac", "record", "uid", "ctr"})
MacFrom = Literal["none", "host", "base", "picc_data", "enc", "record", "uid", "ctr"]
RecordBinding = Literal["none", "mac", "uid"]
SHIPPED_PROFILES = Path(__file__).resolve().parents[2] / "config" / "tag-profiles.toml"

_FIELD_RE = {
    "base": r"https?://[^?#\s]*?",
    "record": r"[^/?#&@:=\s]*",
}
_DEFAULT_FIELD_RE = r"[^/?#&@:=\s]*"
_TOKEN = re.compile(r"\{([a-z_]+)\}")


class ProfileError(ValueError):
    """A profile definition is unusable (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class UrlFields:
    """The raw text of the SUN fields found in one URL, and the MAC window (ASCII bytes)."""

    picc_data: str | None
    enc: str | None
    cmac: str
    uid: str | None
    ctr: str | None
    record: str | None
    mac_input: bytes


@dataclass(frozen=True, slots=True)
class TagProfile:
    """One URL layout. ``record_binding`` says how ``{record}`` is tied to the tag."""

    name: str
    template: str
    mac_from: MacFrom = "none"
    record_binding: RecordBinding = "none"
    key_set: str | None = None
    description: str = ""
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _fields: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = _TOKEN.findall(self.template)
        unknown = sorted(set(names) - PLACEHOLDERS)
        if unknown:
            raise ProfileError(f"profile {self.name!r}: unknown placeholder(s) {unknown}")
        if len(set(names)) != len(names):
            raise ProfileError(f"profile {self.name!r}: a placeholder appears twice")
        if "cmac" not in names:
            raise ProfileError(f"profile {self.name!r}: the template has no {{cmac}}")
        if "picc_data" not in names and not {"uid", "ctr"} & set(names):
            raise ProfileError(f"profile {self.name!r}: needs {{picc_data}} or {{uid}}/{{ctr}}")
        if self.mac_from not in ("none", "host") and self.mac_from not in names:
            raise ProfileError(f"profile {self.name!r}: mac_from {self.mac_from!r} not in template")
        if self.mac_from == "host" and not self.template.startswith(("{base}", "http")):
            raise ProfileError(f"profile {self.name!r}: mac_from 'host' needs an absolute URL")
        if self.record_binding != "none" and "record" not in names:
            raise ProfileError(f"profile {self.name!r}: record_binding needs {{record}}")
        if self.record_binding == "mac" and self.mac_from not in ("host", "base", "record"):
            raise ProfileError(
                f"profile {self.name!r}: record_binding 'mac' needs the record in the window"
            )
        parts: list[str] = []
        pos = 0
        for m in _TOKEN.finditer(self.template):
            parts.append(re.escape(self.template[pos : m.start()]))
            name = m.group(1)
            parts.append(f"(?P<{name}>{_FIELD_RE.get(name, _DEFAULT_FIELD_RE)})")
            pos = m.end()
        parts.append(re.escape(self.template[pos:]))
        object.__setattr__(self, "_regex", re.compile("".join(parts)))
        object.__setattr__(self, "_fields", tuple(names))

    @property
    def fields(self) -> tuple[str, ...]:
        """The placeholders of the template, in order."""
        return self._fields

    def _window_start(self, url: str, m: re.Match[str]) -> int:
        if self.mac_from == "none":
            return m.start("cmac")
        if self.mac_from == "host":
            return url.index("://") + 3
        return m.start(self.mac_from)

    def extract(self, url: str) -> UrlFields | None:
        """The fields of ``url`` if it has this profile's shape, else None."""
        m = self._regex.fullmatch(url)
        if m is None:
            return None
        g = m.groupdict()
        window = url[self._window_start(url, m) : m.start("cmac")]
        try:
            mac_input = window.encode("ascii")
        except UnicodeEncodeError:
            mac_input = window.encode("utf-8", "replace")
        return UrlFields(
            picc_data=g.get("picc_data"),
            enc=g.get("enc"),
            cmac=g["cmac"],
            uid=g.get("uid"),
            ctr=g.get("ctr"),
            record=g.get("record"),
            mac_input=mac_input,
        )

    def render(self, values: dict[str, str]) -> tuple[str, int, int]:
        """Fill the template; return the URL and the MAC window as (start, end) offsets.

        ``values["cmac"]`` should be a placeholder of the right length: the caller computes
        the MAC over ``url[start:end]`` and writes it at ``end``.
        """
        url = _TOKEN.sub(lambda m: values[m.group(1)], self.template)
        m = self._regex.fullmatch(url)
        if m is None:
            raise ProfileError(f"profile {self.name!r}: rendered URL does not match its template")
        return url, self._window_start(url, m), m.start("cmac")


def parse_profiles(table: dict[str, object], *, source: str = "profiles") -> dict[str, TagProfile]:
    """Profiles from a ``{name: {template=..., mac_from=...}}`` table, in file order."""
    out: dict[str, TagProfile] = {}
    allowed = {"template", "mac_from", "record_binding", "key_set", "description"}
    for name, spec in table.items():
        if not isinstance(spec, dict):
            raise ProfileError(f"{source}: profile {name!r} must be a table")
        extra = sorted(set(spec) - allowed)
        if extra:
            raise ProfileError(f"{source}: profile {name!r} has unknown key(s) {extra}")
        if not isinstance(spec.get("template"), str):
            raise ProfileError(f"{source}: profile {name!r} needs a template string")
        if spec.get("mac_from", "none") not in get_args(MacFrom):
            raise ProfileError(f"{source}: profile {name!r}: bad mac_from {spec.get('mac_from')!r}")
        if spec.get("record_binding", "none") not in get_args(RecordBinding):
            raise ProfileError(f"{source}: profile {name!r}: bad record_binding")
        out[name] = TagProfile(name=name, **spec)
    return out


def load_profiles(path: str | Path = SHIPPED_PROFILES) -> dict[str, TagProfile]:
    """The ``[profiles.*]`` tables of a TOML file (the shipped file by default)."""
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    table = doc.get("profiles", {})
    if not isinstance(table, dict):
        raise ProfileError(f"{path}: [profiles] must be a table")
    return parse_profiles(table, source=str(path))
