"""NTAG 424 DNA SUN verification (AES and LRP SDM), key diversification, replay store.

Public objects: :class:`SunVerifier`, :class:`SunResult`, :class:`ReplayStore`,
:func:`load_sun_settings`, :class:`SunSettings`, :class:`TagProfile`, :func:`load_profiles`,
the key sets (:func:`make_keys`) and the reasons (:data:`REASONS`).
"""

from dockgate.gateway.sun.keys import An10922Keys, SdmBackendKeys, TagKeys, make_keys
from dockgate.gateway.sun.profiles import SHIPPED_PROFILES, TagProfile, load_profiles
from dockgate.gateway.sun.reasons import REASONS
from dockgate.gateway.sun.replay import ReplayStore
from dockgate.gateway.sun.settings import KeySetSettings, SunSettings, load_sun_settings
from dockgate.gateway.sun.verifier import SunResult, SunVerifier

__all__ = [
    "REASONS",
    "SHIPPED_PROFILES",
    "An10922Keys",
    "KeySetSettings",
    "ReplayStore",
    "SdmBackendKeys",
    "SunResult",
    "SunSettings",
    "SunVerifier",
    "TagKeys",
    "TagProfile",
    "load_profiles",
    "load_sun_settings",
    "make_keys",
]
