"""One environment serves docpipe and the `temporal` CLI.

docpipe reads Temporal's own variable names (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS_*) and profiles from the client config file the
way temporalio.envconfig does; its older names stay as aliases; a variable that
is set wins over the profile, which wins over docpipe's defaults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docpipe.config import ConfigError, load_settings

PROFILES = """
[profile.default]
address = "profile-host:7233"
namespace = "profile-ns"

[profile.cloud]
address = "acct.tmprl.cloud:7233"
namespace = "acct.ns"
api_key = "key-from-profile"
[profile.cloud.tls]
server_name = "acct.tmprl.cloud"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TEMPORAL_HOST", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY",
                 "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE", "TEMPORAL_TLS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/temporalio/temporal.toml


@pytest.fixture
def config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PROFILES in a file that TEMPORAL_CONFIG_FILE names."""
    path = tmp_path / "temporal.toml"
    path.write_text(PROFILES)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(path))
    return path


def test_temporal_address_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "frontend:7233")
    assert load_settings().temporal_connection().address == "frontend:7233"


def test_the_old_name_still_works_and_the_temporal_name_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_HOST", "old:7233")
    assert load_settings().temporal_connection().address == "old:7233"
    monkeypatch.setenv("TEMPORAL_ADDRESS", "new:7233")
    assert load_settings().temporal_connection().address == "new:7233"


def test_tls_paths_take_the_temporal_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(f"-- {name} --".encode())
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "client.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(tmp_path / "client.key"))
    connection = load_settings().temporal_connection()
    assert connection.server_root_ca_cert == b"-- ca.pem --"
    assert connection.client_cert == b"-- client.pem --"
    assert connection.client_private_key == b"-- client.key --"


def test_without_a_config_file_the_defaults_apply() -> None:
    connection = load_settings().temporal_connection()
    assert (connection.address, connection.namespace) == ("localhost:7233", "default")


@pytest.mark.usefixtures("config_file")
def test_the_default_profile_of_the_config_file_fills_what_is_unset() -> None:
    connection = load_settings().temporal_connection()
    assert (connection.address, connection.namespace) == ("profile-host:7233", "profile-ns")


def test_the_cli_s_default_file_is_found_in_home(tmp_path: Path) -> None:
    home_file = tmp_path / ".config" / "temporalio" / "temporal.toml"
    home_file.parent.mkdir(parents=True)
    home_file.write_text(PROFILES)
    assert load_settings().temporal_connection().address == "profile-host:7233"


@pytest.mark.usefixtures("config_file")
def test_a_variable_that_is_set_wins_over_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "from-env")
    connection = load_settings().temporal_connection()
    assert (connection.address, connection.namespace) == ("profile-host:7233", "from-env")


@pytest.mark.usefixtures("config_file")
def test_a_named_profile_brings_its_api_key_and_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    connection = load_settings().temporal_connection()
    assert connection.address == "acct.tmprl.cloud:7233"
    assert connection.api_key == "key-from-profile"
    assert connection.uses_tls and connection.server_name == "acct.tmprl.cloud"


@pytest.mark.usefixtures("config_file")
def test_a_profile_that_does_not_exist_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_PROFILE", "staging")
    with pytest.raises(ConfigError, match="staging"):
        load_settings().temporal_connection()


def test_a_missing_config_file_that_was_named_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings().temporal_connection()
