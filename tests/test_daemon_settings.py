"""The daemon's configuration: TOML, environment overrides, every problem listed, no secrets."""

from pathlib import Path

import pytest

from dockgate.gateway.daemon.settings import ConfigError, load_settings

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def test_the_shipped_example_is_valid() -> None:
    settings = load_settings(CONFIG_DIR / "dockgate.example.toml")
    assert settings.site.network_id == 1
    assert settings.readers[0].driver == "pcsc"
    assert settings.rules.bundle == (CONFIG_DIR / "rules" / "demo-milano.json").resolve()
    assert "default" in settings.sun.key_sets


def test_every_problem_is_listed_and_no_secret_is_echoed(tmp_path: Path) -> None:
    secret_token = "tooshort"
    secret_key = "not-a-key-at-all-but-secret"
    path = tmp_path / "bad.toml"
    path.write_text(
        f"""
[site]
network_id = 0
[mqtt]
port = 70000
[api]
tokens = [{{ name = "backend", token = "{secret_token}", scopes = ["sync"] }}]
[[readers]]
id = "uart"
driver = "pn532"
station_id = 1
[sun.key_sets.default]
meta_read_key = "{secret_key}"
file_read_key = "ffeeddccbbaa99887766554433221100"
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "site.network_id",
        "mqtt.port",
        "api.tokens.0.token",
        "readers.0",
        "sun.key_sets.default.meta_read_key",
    ]
    assert secret_token not in str(caught.value)
    assert secret_key not in str(caught.value)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[mqtt]\nport = 1883\n[site]\ndata_dir = "state"\n')
    monkeypatch.setenv("DOCKGATE_MQTT__PORT", "1884")
    monkeypatch.setenv("DOCKGATE_LOGGING__FORMAT", "json")
    settings = load_settings(path)
    assert settings.mqtt.port == 1884
    assert settings.logging.format == "json"
    assert settings.site.data_dir == (tmp_path / "state").resolve()


def test_unreadable_and_malformed_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[site\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[sight]\nname = 'typo'\n")
    with pytest.raises(ConfigError, match="sight"):
        load_settings(unknown)
