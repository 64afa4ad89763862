"""The shared_state section: defaults, variables, checks that never quote the URL or the key,
and check-config masking both."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.errors import ConfigError
from proxy.config.load import load_settings
from proxy.config.render import render_masked
from proxy.config.settings import SharedStateSettings
from proxy.secret import Secret

PASSWORD = "redis-password-in-the-url"
KEY = "an-encryption-key-of-32-characters"
LWA = {
    "LWA_CLIENT_ID": "client-id",
    "LWA_CLIENT_SECRET": "client-secret",
    "LWA_REFRESH_TOKEN": "Atzr|refresh",
}


def test_without_redis_each_process_is_alone() -> None:
    settings = load_settings(None, LWA)
    assert settings.shared_state == SharedStateSettings()
    assert settings.shared_state.redis_url is None
    assert settings.shared_state.timeout_s == 0.25
    assert settings.shared_state.on_error == "local"
    assert settings.shared_state.key_prefix == "spapi-proxy"


def test_every_key_comes_from_the_environment_too() -> None:
    settings = load_settings(
        None,
        {
            **LWA,
            "SPAPI_PROXY_SHARED_STATE_REDIS_URL": f"redis://:{PASSWORD}@redis:6379/2",
            "SPAPI_PROXY_SHARED_STATE_KEY_PREFIX": "team-a",
            "SPAPI_PROXY_SHARED_STATE_TIMEOUT_S": "0.5",
            "SPAPI_PROXY_SHARED_STATE_ON_ERROR": "REFUSE",
            "SPAPI_PROXY_SHARED_STATE_ENCRYPTION_KEY": KEY,
        },
    )
    shared = settings.shared_state
    assert shared.redis_url == Secret(f"redis://:{PASSWORD}@redis:6379/2")
    assert shared.encryption_key == Secret(KEY)
    assert (shared.key_prefix, shared.timeout_s, shared.on_error) == ("team-a", 0.5, "refuse")


def test_check_config_masks_the_url_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"shared_state:\n  redis_url: rediss://:{PASSWORD}@redis:6380/0\n  encryption_key: {KEY}\n"
    )
    config.chmod(0o600)
    rendered = render_masked(load_settings(str(config), LWA))
    assert "shared_state:" in rendered
    assert PASSWORD not in rendered
    assert KEY not in rendered
    assert "redis_url: '***'" in rendered
    assert "encryption_key: '***'" in rendered


@pytest.mark.parametrize(
    ("variables", "key", "says"),
    [
        ({"URL": f"http://:{PASSWORD}@redis:6379"}, "shared_state.redis_url", "redis://"),
        ({"URL": f"redis://:{PASSWORD}@redis:99999"}, "shared_state.redis_url", "redis://"),
        ({"URL": f"redis://:{PASSWORD}@redis:6379"}, "shared_state.encryption_key", "must be set"),
        (
            {"URL": f"redis://:{PASSWORD}@redis:6379", "ENCRYPTION_KEY": "short"},
            "shared_state.encryption_key",
            "at least 16",
        ),
        ({"ON_ERROR": "ignore"}, "shared_state.on_error", "local, refuse"),
        ({"KEY_PREFIX": "a{b}"}, "shared_state.key_prefix", "letters, digits"),
        ({"TIMEOUT_S": "0"}, "shared_state.timeout_s", "greater than 0"),
    ],
)
def test_bad_shared_state_is_refused_by_name_without_quoting_secrets(
    variables: dict[str, str], key: str, says: str
) -> None:
    environ = {**LWA}
    for name, value in variables.items():
        environ[f"SPAPI_PROXY_SHARED_STATE_{'REDIS_URL' if name == 'URL' else name}"] = value
    with pytest.raises(ConfigError) as refused:
        load_settings(None, environ)
    assert key in str(refused.value)
    assert says in str(refused.value)
    assert PASSWORD not in str(refused.value)
