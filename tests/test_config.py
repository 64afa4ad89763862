"""Tests for proxy.config: defaults, file + environment merging, interpolation, validation."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config.environment import config_path_from, env_name
from proxy.config.errors import ConfigError
from proxy.config.load import load_settings
from proxy.config.render import file_mode_warning, render_masked
from proxy.config.schema import SCHEMA
from proxy.config.settings import (
    IDEMPOTENT_METHODS,
    AwsSettings,
    ListenSettings,
    Profile,
    RateLimitSettings,
    RdtSettings,
    Settings,
)
from proxy.config.validate import check_exposure
from proxy.secret import Secret

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"

# Distinctive values so a leak is found by a plain substring search.
CLIENT_SECRET = "amzn1.oa2-cs.v1.LEAKCHECK-client-secret-7f3a"
REFRESH_TOKEN = "Atzr|LEAKCHECK-refresh-token-91bd"
AWS_SECRET = "LEAKCHECK/aws+secret/key/0c2e"
AUTH_TOKEN = "LEAKCHECK-auth-token-55aa"
EU_REFRESH_TOKEN = "Atzr|LEAKCHECK-eu-refresh-token-3c1d"
EU_CLIENT_SECRET = "amzn1.oa2-cs.v1.LEAKCHECK-eu-client-secret-e4e4"
EU_AWS_SECRET = "LEAKCHECK/eu+aws/secret/8b8b"
SECRETS = (
    CLIENT_SECRET,
    REFRESH_TOKEN,
    AWS_SECRET,
    AUTH_TOKEN,
    EU_REFRESH_TOKEN,
    EU_CLIENT_SECRET,
    EU_AWS_SECRET,
)

LWA_ENV = {
    "LWA_CLIENT_ID": "amzn1.application-oa2-client.abc",
    "LWA_CLIENT_SECRET": CLIENT_SECRET,
    "LWA_REFRESH_TOKEN": REFRESH_TOKEN,
}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def load(tmp_path: Path, text: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    path = write(tmp_path, text) if text is not None else None
    return load_settings(path, {**LWA_ENV, **(env or {})})


def error(tmp_path: Path, text: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Load, expect a ConfigError, and return its message after checking that it leaks nothing."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    message = str(info.value)
    assert message.startswith(f"config error at {info.value.key}: ")
    assert not any(secret in message for secret in SECRETS), message
    return message


# --- defaults and precedence ------------------------------------------------------------------


def test_defaults_match_the_product_contract() -> None:
    settings = load_settings(None, LWA_ENV)

    assert settings.listen == ListenSettings(
        host="127.0.0.1",
        port=8000,
        auth_token=None,
        allow_unauthenticated=False,
        max_body_bytes=10485760,
        drain_timeout_s=10.0,
    )
    upstream = settings.upstream
    assert (upstream.region, upstream.sandbox, upstream.endpoint) == ("na", True, None)
    assert (upstream.timeout_s, upstream.ca_bundle, upstream.user_agent) == (30.0, None, None)
    assert upstream.max_connections == 100
    lwa = settings.lwa
    assert lwa.client_id == LWA_ENV["LWA_CLIENT_ID"]
    assert lwa.client_secret == Secret(CLIENT_SECRET)
    assert lwa.refresh_token == Secret(REFRESH_TOKEN)
    assert lwa.token_url == "https://api.amazon.com/auth/o2/token"
    assert lwa.token_headers == ("x-amz-access-token",)
    assert lwa.timeout_s == 10.0
    assert settings.aws is None
    assert settings.rdt == RdtSettings(enabled=True, max_cached=10_000)
    assert settings.rate_limits == RateLimitSettings(
        enabled=True,
        max_wait_s=10.0,
        retries=2,
        retry_methods=("GET", "HEAD", "PUT", "DELETE", "OPTIONS"),
    )
    assert settings.profiles == ()
    assert list(settings.all_profiles) == ["default"]


def test_schema_has_exactly_the_dataclass_fields_with_the_same_defaults() -> None:
    for name, section in SCHEMA.items():
        fields = {f.name: f for f in dataclasses.fields(section.build)}
        assert list(section.keys) == list(fields), name
        for key, spec in section.keys.items():
            field_default = fields[key].default
            if field_default is dataclasses.MISSING or "${" in str(spec.default):
                continue
            assert spec.default == field_default, f"{name}.{key}"


def test_file_overrides_defaults_and_variables_override_the_file(tmp_path: Path) -> None:
    text = "listen:\n  port: 9001\n  host: localhost\nupstream:\n  region: eu\n"
    settings = load(tmp_path, text, {"SPAPI_PROXY_LISTEN_PORT": "9002"})

    assert settings.listen.port == 9002
    assert settings.listen.host == "localhost"
    assert settings.upstream.region == "eu"
    assert settings.upstream.signing_region == "eu-west-1"


def test_empty_override_variable_counts_as_unset(tmp_path: Path) -> None:
    settings = load(tmp_path, "listen:\n  port: 9001\n", {"SPAPI_PROXY_LISTEN_PORT": ""})

    assert settings.listen.port == 9001


def test_null_section_means_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "listen:\nupstream: {}\n").listen.port == 8000


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "# nothing\n").upstream.timeout_s == 30.0


# --- interpolation ----------------------------------------------------------------------------


def test_unset_required_variable_names_key_and_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"LWA_CLIENT_SECRET": "x", "LWA_REFRESH_TOKEN": "y"})

    assert info.value.key == "lwa.client_id"
    assert str(info.value) == (
        "config error at lwa.client_id: environment variable LWA_CLIENT_ID is not set "
        "(use ${LWA_CLIENT_ID:-default} for a default)"
    )


@pytest.mark.parametrize(("env", "expected"), [({}, "fallback"), ({"UA": ""}, "fallback")])
def test_default_applies_when_variable_unset_or_empty(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    settings = load(tmp_path, "upstream:\n  user_agent: ${UA:-fallback}\n", env)

    assert settings.upstream.user_agent == expected


def test_set_variable_wins_over_default(tmp_path: Path) -> None:
    settings = load(tmp_path, "upstream:\n  user_agent: ${UA:-fallback}\n", {"UA": "mine/1"})

    assert settings.upstream.user_agent == "mine/1"


def test_several_placeholders_and_literal_dollars(tmp_path: Path) -> None:
    text = "upstream:\n  user_agent: 'a-${A}-$${B:-b}-$x'\n"

    settings = load(tmp_path, text, {"A": "1"})

    assert settings.upstream.user_agent == "a-1-$b-$x"


def test_interpolation_happens_before_type_conversion(tmp_path: Path) -> None:
    text = "listen:\n  port: ${PORT:-8000}\nupstream:\n  sandbox: ${SANDBOX:-true}\n"

    settings = load(tmp_path, text, {"PORT": "9443", "SANDBOX": "no"})

    assert settings.listen.port == 9443
    assert settings.upstream.sandbox is False


def test_unterminated_placeholder_is_an_error(tmp_path: Path) -> None:
    message = error(tmp_path, "upstream:\n  user_agent: ${UA\n")

    assert "upstream.user_agent" in message
    assert "unterminated" in message


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("${UA-x}", "a malformed placeholder"),
        ("${}", "a malformed placeholder"),
        ("${file:}", "${file:} with no path"),
    ],
)
def test_malformed_placeholder_is_an_error(tmp_path: Path, value: str, fragment: str) -> None:
    message = error(tmp_path, f"upstream:\n  user_agent: '{value}'\n")

    assert message.startswith(f"config error at upstream.user_agent: has {fragment}")


def test_file_placeholder_strips_one_trailing_newline(tmp_path: Path) -> None:
    secret_file = tmp_path / "lwa_client_secret"
    secret_file.write_text(CLIENT_SECRET + "\n\n", encoding="utf-8")
    text = f"lwa:\n  client_secret: ${{file:{secret_file}}}\n"

    settings = load(tmp_path, text, {"LWA_CLIENT_SECRET": "unused"})

    assert settings.lwa.client_secret.reveal() == CLIENT_SECRET + "\n"


def test_file_placeholder_content_is_not_expanded_again(tmp_path: Path) -> None:
    value_file = tmp_path / "ua"
    value_file.write_text("ua-${NOT_SET}\n", encoding="utf-8")

    settings = load(tmp_path, f"upstream:\n  user_agent: ${{file:{value_file}}}\n")

    assert settings.upstream.user_agent == "ua-${NOT_SET}"


def test_missing_secret_file_names_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "secret"

    message = error(tmp_path, f"lwa:\n  refresh_token: ${{file:{missing}}}\n")

    assert "lwa.refresh_token" in message
    assert str(missing) in message


def test_empty_required_value_names_key_and_placeholder(tmp_path: Path) -> None:
    message = error(tmp_path, env={"LWA_CLIENT_SECRET": ""})

    assert message.startswith("config error at lwa.client_secret: must not be empty")
    assert "${LWA_CLIENT_SECRET}" in message


# --- environment-only mode --------------------------------------------------------------------


def test_environment_alone_configures_everything(tmp_path: Path) -> None:
    secret_file = tmp_path / "lwa_client_secret"
    secret_file.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
    env = {
        "SPAPI_PROXY_LISTEN_HOST": "0.0.0.0",
        "SPAPI_PROXY_LISTEN_PORT": " 9000 ",
        "SPAPI_PROXY_LISTEN_ALLOW_UNAUTHENTICATED": "Yes",
        "SPAPI_PROXY_UPSTREAM_SANDBOX": "OFF",
        "SPAPI_PROXY_UPSTREAM_ENDPOINT": "http://127.0.0.1:9100/",
        "SPAPI_PROXY_UPSTREAM_TIMEOUT_S": "2.5",
        "SPAPI_PROXY_LWA_CLIENT_SECRET": f"${{file:{secret_file}}}",
        "SPAPI_PROXY_LWA_TOKEN_HEADERS": "x-amz-access-token, X-Amzn-Access-Token",
        "LWA_CLIENT_SECRET": "not-this-one",
    }

    settings = load_settings(None, {**LWA_ENV, **env})

    assert (settings.listen.host, settings.listen.port) == ("0.0.0.0", 9000)
    assert settings.listen.allow_unauthenticated is True
    assert settings.upstream.sandbox is False
    assert settings.upstream.base_url == "http://127.0.0.1:9100"
    assert settings.upstream.timeout_s == 2.5
    assert settings.lwa.client_secret.reveal() == CLIENT_SECRET
    assert settings.lwa.token_headers == ("x-amz-access-token", "x-amzn-access-token")
    assert settings.aws is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [(t, True) for t in ("true", "TRUE", "yes", "On", "1")]
    + [(f, False) for f in ("false", "No", "off", "0")],
)
def test_boolean_spellings_from_variables(text: str, expected: bool) -> None:
    env = {**LWA_ENV, "SPAPI_PROXY_UPSTREAM_SANDBOX": text}

    assert load_settings(None, env).upstream.sandbox is expected


def test_every_key_has_an_override_variable() -> None:
    env = {**LWA_ENV, "SPAPI_PROXY_AWS_ROLE_SESSION_NAME": "from-env"}

    assert env_name("aws", "role_session_name") == "SPAPI_PROXY_AWS_ROLE_SESSION_NAME"
    aws = load_settings(None, env).aws
    assert aws is not None
    assert aws.role_session_name == "from-env"


def test_unknown_spapi_proxy_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, env={"SPAPI_PROXY_LISTEN_PROT": "9000"})

    assert info.value.key == "SPAPI_PROXY_LISTEN_PROT"
    assert "did you mean SPAPI_PROXY_LISTEN_PORT?" in str(info.value)


def test_spapi_proxy_config_variable_is_not_a_setting() -> None:
    settings = load_settings(None, {**LWA_ENV, "SPAPI_PROXY_CONFIG": "/some/file.yaml"})

    assert settings.listen.port == 8000


def test_bad_override_names_key_and_variable(tmp_path: Path) -> None:
    message = error(tmp_path, env={"SPAPI_PROXY_LISTEN_PORT": "eighty"})

    assert message.startswith("config error at listen.port: expected a whole number")
    assert "SPAPI_PROXY_LISTEN_PORT" in message


# --- the aws section --------------------------------------------------------------------------

ROLE = "arn:aws:iam::123456789012:role/SellingPartner"


@pytest.mark.parametrize(
    "env",
    [
        {"SPAPI_ROLE_ARN": ROLE},
        {"SPAPI_PROXY_AWS_ROLE_ARN": ROLE},
        {"SPAPI_PROXY_AWS_STS_ENDPOINT": "http://127.0.0.1:9200"},
    ],
)
def test_aws_variables_enable_signing(env: dict[str, str]) -> None:
    aws = load_settings(None, {**LWA_ENV, **env}).aws

    assert aws is not None
    assert aws.role_session_name == "spapi-proxy"


@pytest.mark.parametrize(
    "env",
    [
        {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": AWS_SECRET},
        {"SPAPI_ROLE_ARN": ""},
        {"SPAPI_PROXY_AWS_ROLE_ARN": ""},
    ],
)
def test_ambient_or_empty_aws_variables_do_not_enable_signing(env: dict[str, str]) -> None:
    assert load_settings(None, {**LWA_ENV, **env}).aws is None


def test_empty_aws_mapping_enables_aws_with_defaults(tmp_path: Path) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": AWS_SECRET}

    aws = load(tmp_path, "aws: {}\n", env).aws

    assert aws is not None
    assert aws.access_key_id == "AKIAEXAMPLE"
    assert aws.secret_access_key == Secret(AWS_SECRET)
    assert (aws.role_arn, aws.sts_endpoint, aws.timeout_s) == (None, None, 10.0)


def test_aws_with_nothing_set_means_default_chain_and_no_role(tmp_path: Path) -> None:
    aws = load(tmp_path, "aws:\n  role_session_name: ci\n").aws

    assert aws is not None
    assert (aws.access_key_id, aws.secret_access_key, aws.role_arn) == (None, None, None)


def test_aws_null_means_no_signing(tmp_path: Path) -> None:
    assert load(tmp_path, "aws: null\n").aws is None


def test_access_key_without_secret_key_names_both(tmp_path: Path) -> None:
    message = error(tmp_path, "aws:\n  access_key_id: AKIAEXAMPLE\n")

    assert message.startswith("config error at aws.secret_access_key:")
    assert "aws.access_key_id" in message


def test_secret_key_without_access_key_names_both(tmp_path: Path) -> None:
    message = error(tmp_path, env={"SPAPI_PROXY_AWS_SECRET_ACCESS_KEY": AWS_SECRET})

    assert message.startswith("config error at aws.access_key_id:")
    assert "aws.secret_access_key" in message


# --- rdt and rate_limits ----------------------------------------------------------------------


def test_rdt_and_rate_limits_from_the_file(tmp_path: Path) -> None:
    text = (
        "rdt:\n  enabled: false\n  max_cached: 1\n"
        "rate_limits:\n  max_wait_s: 0\n  retries: 0\n  retry_methods: [get, Patch, GET]\n"
    )

    settings = load(tmp_path, text)

    assert settings.rdt == RdtSettings(enabled=False, max_cached=1)
    assert settings.rate_limits == RateLimitSettings(
        enabled=True, max_wait_s=0.0, retries=0, retry_methods=("GET", "PATCH")
    )


def test_rdt_and_rate_limits_from_variables(tmp_path: Path) -> None:
    env = {
        "SPAPI_PROXY_RDT_ENABLED": "off",
        "SPAPI_PROXY_RDT_MAX_CACHED": "500",
        "SPAPI_PROXY_RATE_LIMITS_ENABLED": "no",
        "SPAPI_PROXY_RATE_LIMITS_MAX_WAIT_S": "2.5",
        "SPAPI_PROXY_RATE_LIMITS_RETRIES": "5",
        "SPAPI_PROXY_RATE_LIMITS_RETRY_METHODS": "get, post,GET ",
    }

    settings = load(tmp_path, "rdt:\n  max_cached: 7\nrate_limits:\n  retries: 1\n", env)

    assert settings.rdt == RdtSettings(enabled=False, max_cached=500)
    assert settings.rate_limits == RateLimitSettings(
        enabled=False, max_wait_s=2.5, retries=5, retry_methods=("GET", "POST")
    )


def test_empty_retry_methods_retry_nothing(tmp_path: Path) -> None:
    settings = load(tmp_path, "rate_limits:\n  retry_methods: []\n")

    assert settings.rate_limits.retry_methods == ()


def test_null_rdt_and_rate_limits_sections_mean_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "rdt:\nrate_limits: {}\n")

    assert settings.rdt == RdtSettings()
    assert settings.rate_limits.retry_methods == IDEMPOTENT_METHODS


def test_bad_rate_limit_variable_names_key_and_variable(tmp_path: Path) -> None:
    message = error(tmp_path, env={"SPAPI_PROXY_RATE_LIMITS_RETRY_METHODS": "GET,P*ST"})

    assert message.startswith("config error at rate_limits.retry_methods: 'P*ST' is not")
    assert "set by SPAPI_PROXY_RATE_LIMITS_RETRY_METHODS" in message


def test_variable_names_are_unambiguous() -> None:
    # Section names with underscores (rate_limits) must not make two keys share a variable.
    names = [env_name(section, key) for section, spec in SCHEMA.items() for key in spec.keys]

    assert len(names) == len(set(names))
    assert env_name("rate_limits", "max_wait_s") == "SPAPI_PROXY_RATE_LIMITS_MAX_WAIT_S"


# --- profiles ---------------------------------------------------------------------------------

TWO_PROFILES = """\
upstream:
  timeout_s: 12
profiles:
  eu:
    upstream:
      region: eu
  seller2:
    lwa:
      refresh_token: ${SELLER2_REFRESH_TOKEN}
"""


def two_profiles(tmp_path: Path, env: Mapping[str, str] | None = None) -> dict[str, Profile]:
    settings = load(
        tmp_path, TWO_PROFILES, {"SELLER2_REFRESH_TOKEN": EU_REFRESH_TOKEN, **(env or {})}
    )
    return settings.all_profiles


def test_region_only_profile_keeps_the_top_level_credentials(tmp_path: Path) -> None:
    profiles = two_profiles(tmp_path)
    default, eu = profiles["default"], profiles["eu"]

    assert eu.lwa == default.lwa
    assert eu.aws is None
    assert (eu.upstream.region, eu.upstream.sandbox, eu.upstream.timeout_s) == ("eu", True, 12.0)
    assert eu.upstream.base_url == "https://sandbox.sellingpartnerapi-eu.amazon.com"
    assert eu.upstream.signing_region == "eu-west-1"


def test_refresh_token_only_profile_keeps_the_region(tmp_path: Path) -> None:
    profiles = two_profiles(tmp_path)
    default, seller2 = profiles["default"], profiles["seller2"]

    assert seller2.upstream == default.upstream
    assert seller2.lwa.refresh_token == Secret(EU_REFRESH_TOKEN)
    assert seller2.lwa.client_id == default.lwa.client_id
    assert seller2.lwa.client_secret == default.lwa.client_secret == Secret(CLIENT_SECRET)
    assert default.lwa.refresh_token == Secret(REFRESH_TOKEN)


def test_all_profiles_lists_default_then_named_in_file_order(tmp_path: Path) -> None:
    text = "profiles:\n  zeta: {}\n  alpha:\n  Mid_1-x: {lwa: {}}\n"

    settings = load(tmp_path, text)

    assert [p.name for p in settings.profiles] == ["zeta", "alpha", "Mid_1-x"]
    assert list(settings.all_profiles) == ["default", "zeta", "alpha", "Mid_1-x"]
    assert settings.all_profiles["default"] == settings.default_profile
    for profile in settings.profiles:  # an empty profile is the default one under another name
        assert (profile.upstream, profile.lwa, profile.aws) == (
            settings.upstream,
            settings.lwa,
            settings.aws,
        )


def test_variables_reach_profiles_but_a_profile_key_wins(tmp_path: Path) -> None:
    text = "upstream:\n  timeout_s: 12\nprofiles:\n  eu:\n    upstream:\n      region: eu\n"
    text += "  slow:\n    upstream:\n      timeout_s: 90\n"
    env = {"SPAPI_PROXY_UPSTREAM_TIMEOUT_S": "5", "SPAPI_PROXY_UPSTREAM_REGION": "fe"}

    profiles = load(tmp_path, text, env).all_profiles

    assert (profiles["default"].upstream.region, profiles["default"].upstream.timeout_s) == (
        "fe",
        5,
    )
    assert (profiles["eu"].upstream.region, profiles["eu"].upstream.timeout_s) == ("eu", 5)
    assert (profiles["slow"].upstream.region, profiles["slow"].upstream.timeout_s) == ("fe", 90)


def test_profile_values_are_interpolated_converted_and_normalised(tmp_path: Path) -> None:
    text = (
        "profiles:\n  eu:\n    upstream:\n      region: EU\n      sandbox: ${EU_SANDBOX:-yes}\n"
        "      endpoint: http://127.0.0.1:9001/\n"
        "    lwa:\n      token_headers: [X-Amzn-Access-Token]\n"
    )

    eu = load(tmp_path, text, {"EU_SANDBOX": "off"}).all_profiles["eu"]

    assert (eu.upstream.region, eu.upstream.sandbox) == ("eu", False)
    assert eu.upstream.base_url == "http://127.0.0.1:9001"
    assert eu.lwa.token_headers == ("x-amzn-access-token",)


def test_null_in_a_profile_clears_an_inherited_optional_key(tmp_path: Path) -> None:
    text = (
        "upstream:\n  endpoint: http://127.0.0.1:9000\n  user_agent: mine/1\n"
        "profiles:\n  real:\n    upstream:\n      endpoint: null\n      sandbox: false\n"
    )

    real = load(tmp_path, text).all_profiles["real"]

    assert real.upstream.endpoint is None
    assert real.upstream.base_url == "https://sellingpartnerapi-na.amazon.com"
    assert real.upstream.user_agent == "mine/1"


def test_null_upstream_or_lwa_in_a_profile_inherits_everything(tmp_path: Path) -> None:
    settings = load(tmp_path, "profiles:\n  eu:\n    upstream:\n    lwa: null\n")

    assert settings.profiles[0].upstream == settings.upstream
    assert settings.profiles[0].lwa == settings.lwa


AWS_TOP = (
    f"aws:\n  access_key_id: AKIATOP\n  secret_access_key: {AWS_SECRET}\n  role_arn: {{ROLE}}\n"
)


def test_profile_aws_inherits_or_turns_signing_off(tmp_path: Path) -> None:
    other_role = "arn:aws:iam::210987654321:role/Other"
    text = AWS_TOP.format(ROLE=ROLE) + (
        "profiles:\n  same: {}\n  unsigned:\n    aws: null\n  blank:\n    aws:\n"
        f"  other:\n    aws:\n      role_arn: {other_role}\n"
    )

    settings = load(tmp_path, text)
    profiles = settings.all_profiles

    assert settings.aws is not None
    assert profiles["same"].aws == settings.aws
    assert profiles["unsigned"].aws is None
    assert profiles["blank"].aws is None  # `aws:` with nothing after it is null too
    other = profiles["other"].aws
    assert other == dataclasses.replace(settings.aws, role_arn=other_role)


def test_profile_aws_turns_signing_on_with_the_aws_defaults(tmp_path: Path) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIAAMBIENT", "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    text = f"profiles:\n  signed:\n    aws: {{}}\n  role:\n    aws:\n      role_arn: {ROLE}\n"

    settings = load(tmp_path, text, env)

    assert settings.aws is None
    assert settings.all_profiles["signed"].aws == AwsSettings(
        access_key_id="AKIAAMBIENT", secret_access_key=Secret(AWS_SECRET)
    )
    role = settings.all_profiles["role"].aws
    assert role is not None
    assert (role.role_arn, role.role_session_name, role.timeout_s) == (ROLE, "spapi-proxy", 10.0)


@pytest.mark.parametrize("name", ["default", "Default", "DEFAULT"])
def test_the_default_profile_name_is_reserved(tmp_path: Path, name: str) -> None:
    message = error(tmp_path, f"profiles:\n  {name}:\n    upstream:\n      region: eu\n")

    assert message.startswith(f"config error at profiles.{name}: the name 'default' is reserved")


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("'eu west'", "profiles.eu west"),
        ("'eu.west'", "profiles.eu.west"),
        ("''", "profiles."),
        ("x" * 65, "profiles." + "x" * 65),
        ("'é'", "profiles.é"),
        ("1", "profiles.1"),
        ("yes", "profiles.True"),
        ("null", "profiles.None"),
    ],
)
def test_bad_profile_names_are_refused(tmp_path: Path, name: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"profiles:\n  {name}: {{}}\n")

    assert info.value.key == key
    assert "1-64 letters, digits, _ or -" in info.value.message


def test_quoted_numeric_profile_name_is_accepted(tmp_path: Path) -> None:
    assert load(tmp_path, "profiles:\n  '1': {}\n").profiles[0].name == "1"


def test_profile_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    message = error(tmp_path, "profiles:\n  eu: {}\n  EU: {}\n")

    assert message.startswith("config error at profiles.EU: differs from profile 'eu' only")


def test_duplicate_profile_name_is_refused(tmp_path: Path) -> None:
    assert "duplicate key on line 3" in error(tmp_path, "profiles:\n  eu: {}\n  eu: {}\n")


def test_unknown_key_in_a_profile_names_the_full_key_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "profiles:\n  eu:\n    upstream:\n      regoin: eu\n")

    assert info.value.key == "profiles.eu.upstream.regoin"
    assert "unknown key; did you mean profiles.eu.upstream.region?" in info.value.message


def test_unknown_section_in_a_profile_suggests(tmp_path: Path) -> None:
    message = error(tmp_path, "profiles:\n  eu:\n    upstram: {}\n")

    assert message.startswith(
        "config error at profiles.eu.upstram: unknown section; did you mean profiles.eu.upstream?"
    )


@pytest.mark.parametrize("section", ["listen", "rdt", "rate_limits"])
def test_proxy_wide_sections_are_refused_in_a_profile(tmp_path: Path, section: str) -> None:
    message = error(tmp_path, f"profiles:\n  eu:\n    {section}: {{}}\n")

    assert message.startswith(f"config error at profiles.eu.{section}: {section} is proxy-wide")


def test_misspelt_profiles_section_suggests_profiles(tmp_path: Path) -> None:
    assert "did you mean profiles?" in error(tmp_path, "profile:\n  eu: {}\n")


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("profiles: [eu]\n", "profiles", "mapping of names to profiles, got a list"),
        ("profiles:\n  eu: 5\n", "profiles.eu", "mapping of upstream, lwa, aws, got int"),
        ("profiles:\n  eu:\n    lwa: [x]\n", "profiles.eu.lwa", "mapping of keys, got a list"),
        (
            "profiles:\n  eu:\n    upstream:\n      region: us\n",
            "profiles.eu.upstream.region",
            "na, eu, fe",
        ),
        (
            "profiles:\n  eu:\n    upstream:\n      port: 1\n",
            "profiles.eu.upstream.port",
            "unknown",
        ),
        ("profiles:\n  eu:\n    lwa:\n      timeout_s: 0\n", "profiles.eu.lwa.timeout_s", "than 0"),
        ("profiles:\n  eu:\n    lwa:\n      client_id:\n", "profiles.eu.lwa.client_id", "be set"),
        ("profiles:\n  eu:\n    aws:\n      role_arn: x\n", "profiles.eu.aws.role_arn", "IAM role"),
    ],
)
def test_bad_profile_shapes_and_values_name_the_full_key(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)

    assert info.value.key == key
    assert fragment in info.value.message


def test_unset_variable_in_a_profile_names_the_key_and_variable(tmp_path: Path) -> None:
    text = "profiles:\n  eu:\n    lwa:\n      refresh_token: ${EU_LWA_REFRESH_TOKEN}\n"

    message = error(tmp_path, text)

    assert message == (
        "config error at profiles.eu.lwa.refresh_token: environment variable "
        "EU_LWA_REFRESH_TOKEN is not set (use ${EU_LWA_REFRESH_TOKEN:-default} for a default)"
    )


def test_profiles_have_no_variables(tmp_path: Path) -> None:
    message = error(tmp_path, env={"SPAPI_PROXY_PROFILES_EU_UPSTREAM_REGION": "eu"})

    assert message.startswith(
        "config error at SPAPI_PROXY_PROFILES_EU_UPSTREAM_REGION: profiles come from the config "
        "file only"
    )


@pytest.mark.parametrize(
    ("own", "missing"),
    [
        ("lwa:\n      client_id: amzn1.application-oa2-client.other", "client_secret"),
        (f"lwa:\n      client_secret: {EU_CLIENT_SECRET}", "client_id"),
        ("aws:\n      access_key_id: AKIAOTHER", "secret_access_key"),
        (f"aws:\n      secret_access_key: {EU_AWS_SECRET}", "access_key_id"),
    ],
)
def test_a_profile_changing_half_a_credential_pair_must_give_both(
    tmp_path: Path, own: str, missing: str
) -> None:
    text = AWS_TOP.format(ROLE=ROLE) + f"profiles:\n  eu:\n    {own}\n"

    message = error(tmp_path, text)

    section = own.partition(":")[0]
    assert message.startswith(f"config error at profiles.eu.{section}.{missing}: ")
    assert "only work together" in message


def test_a_profile_repeating_half_a_pair_unchanged_is_fine(tmp_path: Path) -> None:
    text = "profiles:\n  eu:\n    lwa:\n      client_id: ${LWA_CLIENT_ID}\n"

    settings = load(tmp_path, text)

    assert settings.profiles[0].lwa == settings.lwa


def test_a_profile_giving_both_halves_of_a_pair_is_fine(tmp_path: Path) -> None:
    text = AWS_TOP.format(ROLE=ROLE) + (
        "profiles:\n  eu:\n    lwa:\n      client_id: other\n      client_secret: ${EU_SECRET}\n"
        "    aws:\n      access_key_id: AKIAEU\n      secret_access_key: ${EU_AWS}\n"
    )

    eu = load(tmp_path, text, {"EU_SECRET": EU_CLIENT_SECRET, "EU_AWS": EU_AWS_SECRET}).profiles[0]

    assert (eu.lwa.client_id, eu.lwa.client_secret) == ("other", Secret(EU_CLIENT_SECRET))
    assert eu.lwa.refresh_token == Secret(REFRESH_TOKEN)
    assert eu.aws is not None
    assert (eu.aws.access_key_id, eu.aws.secret_access_key) == ("AKIAEU", Secret(EU_AWS_SECRET))
    assert eu.aws.role_arn == ROLE


def test_profile_aws_turned_on_with_half_a_key_pair_names_both(tmp_path: Path) -> None:
    message = error(tmp_path, "profiles:\n  eu:\n    aws:\n      access_key_id: AKIAEU\n")

    assert message.startswith("config error at profiles.eu.aws.secret_access_key:")
    assert "profiles.eu.aws.access_key_id is set" in message


# --- unknown keys and wrong shapes ------------------------------------------------------------


def test_unknown_key_names_dotted_key_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "upstream:\n  timeout: 5\n")

    assert info.value.key == "upstream.timeout"
    assert "did you mean upstream.timeout_s?" in str(info.value)


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    message = error(tmp_path, "lsiten:\n  port: 1\n")

    assert message.startswith("config error at lsiten: unknown section; did you mean listen?")


def test_unknown_key_far_from_any_gets_no_suggestion(tmp_path: Path) -> None:
    message = error(tmp_path, "lwa:\n  zzz: 1\n")

    assert "lwa.zzz" in message
    assert "did you mean" not in message


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    assert error(tmp_path, "listen: 5\n").startswith("config error at listen: must be a mapping")


def test_file_must_be_a_mapping(tmp_path: Path) -> None:
    assert "mapping of sections" in error(tmp_path, "- listen\n")


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    message = error(tmp_path, "listen:\n  port: 1\n  port: 2\n")

    assert message.startswith("config error at port: duplicate key on line 3")


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.yaml")

    with pytest.raises(ConfigError) as info:
        load_settings(missing, LWA_ENV)

    assert info.value.key == missing


def test_yaml_syntax_error_shows_position_not_content(tmp_path: Path) -> None:
    message = error(tmp_path, f"lwa:\n  client_secret: {CLIENT_SECRET}: [\n")

    assert "invalid YAML at line 2" in message


# --- value validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("listen:\n  port: 0\n", "listen.port", "between 1 and 65535"),
        ("listen:\n  port: 70000\n", "listen.port", "between 1 and 65535"),
        ("listen:\n  port: 80.5\n", "listen.port", "whole number"),
        ("listen:\n  port: true\n", "listen.port", "whole number"),
        ("listen:\n  port:\n", "listen.port", "must be set"),
        ("listen:\n  max_body_bytes: 0\n", "listen.max_body_bytes", "greater than 0"),
        ("listen:\n  allow_unauthenticated: maybe\n", "listen.allow_unauthenticated", "true or"),
        ("listen:\n  host: ''\n", "listen.host", "must not be empty"),
        ("upstream:\n  region: us\n", "upstream.region", "na, eu, fe"),
        ("upstream:\n  timeout_s: 0\n", "upstream.timeout_s", "greater than 0"),
        ("upstream:\n  timeout_s: .nan\n", "upstream.timeout_s", "expected a number"),
        ("upstream:\n  max_connections: 0\n", "upstream.max_connections", "greater than 0"),
        ("listen:\n  busy_poll_us: -1\n", "listen.busy_poll_us", "0 (off) to 10000"),
        ("listen:\n  busy_poll_us: 20000\n", "listen.busy_poll_us", "0 (off) to 10000"),
        ("upstream:\n  endpoint: http://h:9000/v1\n", "upstream.endpoint", "no path"),
        ("upstream:\n  endpoint: http://h:9000?x=1\n", "upstream.endpoint", "no path"),
        ("upstream:\n  endpoint: h:9000\n", "upstream.endpoint", "http(s)://host"),
        ("upstream:\n  endpoint: http://h:99999\n", "upstream.endpoint", "valid port"),
        ("upstream:\n  endpoint: https://u:p@h\n", "upstream.endpoint", "user:password"),
        ("upstream:\n  ca_bundle: /nonexistent/ca.pem\n", "upstream.ca_bundle", "not readable"),
        ("upstream:\n  user_agent: [a]\n", "upstream.user_agent", "got a list"),
        ("lwa:\n  token_url: ftp://x/token\n", "lwa.token_url", "http(s)://"),
        ("lwa:\n  token_headers: [authorization]\n", "lwa.token_headers", "'authorization'"),
        ("lwa:\n  token_headers: []\n", "lwa.token_headers", "at least one"),
        ("lwa:\n  token_headers: x\n", "lwa.token_headers", "'x'"),
        ("lwa:\n  timeout_s: -1\n", "lwa.timeout_s", "greater than 0"),
        ("aws:\n  role_arn: arn:aws:iam::1:user/me\n", "aws.role_arn", "IAM role ARN"),
        ("aws:\n  role_session_name: a b\n", "aws.role_session_name", "2-64"),
        ("aws:\n  sts_endpoint: localhost\n", "aws.sts_endpoint", "http(s)://"),
        ("rdt:\n  enabled: sometimes\n", "rdt.enabled", "true or false"),
        ("rdt:\n  max_cached: 0\n", "rdt.max_cached", "greater than 0"),
        ("rdt:\n  max_cached: many\n", "rdt.max_cached", "whole number"),
        ("rate_limits:\n  max_wait_s: -0.5\n", "rate_limits.max_wait_s", "0 or more"),
        ("rate_limits:\n  max_wait_s: .inf\n", "rate_limits.max_wait_s", "expected a number"),
        ("rate_limits:\n  retries: -1\n", "rate_limits.retries", "0 or more"),
        ("rate_limits:\n  retries: 1.5\n", "rate_limits.retries", "whole number"),
        ("rate_limits:\n  retry_methods: [GET, 'P OST']\n", "rate_limits.retry_methods", "'P OST'"),
        ("rate_limits:\n  retry_methods: [GET, 7]\n", "rate_limits.retry_methods", "'7'"),
        ("rate_limits:\n  retry_methods: [x-get]\n", "rate_limits.retry_methods", "letters"),
        ("rate_limits:\n  retry_methods: {a: 1}\n", "rate_limits.retry_methods", "a list"),
    ],
)
def test_invalid_values_are_refused_naming_the_key(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)

    assert info.value.key == key
    assert fragment in str(info.value)


def test_valid_values_are_normalised(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    text = (
        f"upstream:\n  region: EU\n  endpoint: HTTP://127.0.0.1:9000/\n  ca_bundle: {ca}\n"
        "listen:\n  drain_timeout_s: 0\n  busy_poll_us: 0\n"
        "lwa:\n  token_headers: [X-Amz-Access-Token, x-amz-access-token]\n"
        f"aws:\n  role_arn: {ROLE}\n"
    )

    settings = load(tmp_path, text)

    assert settings.upstream.region == "eu"
    assert settings.upstream.endpoint == "http://127.0.0.1:9000"
    assert settings.upstream.ca_bundle == str(ca)
    assert settings.listen.drain_timeout_s == 0.0
    assert settings.listen.busy_poll_us == 0
    assert settings.lwa.token_headers == ("x-amz-access-token",)
    assert settings.aws is not None
    assert settings.aws.role_arn == ROLE


def test_numbers_in_string_keys_become_strings(tmp_path: Path) -> None:
    settings = load(tmp_path, "listen:\n  auth_token: 123456\n")

    assert settings.listen.auth_token == Secret("123456")


def test_non_loopback_host_without_auth_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, "listen:\n  host: 0.0.0.0\n")

    assert message.startswith("config error at listen.host:")
    assert "listen.auth_token" in message
    assert "listen.allow_unauthenticated" in message


def test_non_loopback_host_with_auth_token_is_accepted(tmp_path: Path) -> None:
    settings = load(tmp_path, "listen:\n  host: 0.0.0.0\n  auth_token: ${TOKEN}\n", {"TOKEN": "t"})

    assert settings.listen.auth_token == Secret("t")


def test_check_exposure_applies_to_a_later_host_override() -> None:
    listen = dataclasses.replace(load_settings(None, LWA_ENV).listen, host="192.0.2.1")

    with pytest.raises(ConfigError) as info:
        check_exposure(listen)

    assert info.value.key == "listen.host"


# --- secrets never shown ----------------------------------------------------------------------


def secret_settings(tmp_path: Path) -> Settings:
    text = (
        "listen:\n  auth_token: ${AUTH}\n"
        "aws:\n  access_key_id: AKIAEXAMPLE\n  secret_access_key: ${AWS_SECRET}\n"
    )
    return load(tmp_path, text, {"AUTH": AUTH_TOKEN, "AWS_SECRET": AWS_SECRET})


def test_secrets_are_secret_objects_and_absent_from_repr(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path)

    assert settings.listen.auth_token is not None
    assert settings.listen.auth_token.reveal() == AUTH_TOKEN
    assert settings.aws is not None
    assert isinstance(settings.aws.secret_access_key, Secret)
    for text in (repr(settings), str(settings), f"{settings}"):
        assert not any(secret in text for secret in SECRETS), text


@pytest.mark.parametrize(
    "text",
    [
        f"lwa:\n  client_secret: [{CLIENT_SECRET}]\n",
        f"lwa:\n  refresh_token: {{a: {REFRESH_TOKEN}}}\n",
        f"listen:\n  auth_token: ${{{AUTH_TOKEN}}}\n",
        f"listen:\n  auth_token: {AUTH_TOKEN}\n  port: 0\n",
        f"lwa:\n  client_secret: '{CLIENT_SECRET}${{'\n",
    ],
)
def test_errors_on_secret_keys_do_not_show_the_value(tmp_path: Path, text: str) -> None:
    error(tmp_path, text)  # `error` asserts that no secret is in the message


def profile_secret_settings(tmp_path: Path) -> Settings:
    text = (
        "profiles:\n  eu:\n    upstream:\n      region: eu\n"
        f"    lwa:\n      refresh_token: {EU_REFRESH_TOKEN}\n"
        f"      client_id: eu-app\n      client_secret: {EU_CLIENT_SECRET}\n"
        f"    aws:\n      access_key_id: AKIAEU\n      secret_access_key: {EU_AWS_SECRET}\n"
        "  unsigned:\n    aws: null\n"
    )
    return load(tmp_path, text)


def test_profile_secrets_are_absent_from_repr_and_render_masked(tmp_path: Path) -> None:
    settings = profile_secret_settings(tmp_path)
    eu = settings.all_profiles["eu"]

    assert eu.lwa.refresh_token.reveal() == EU_REFRESH_TOKEN
    assert eu.aws is not None
    assert eu.aws.secret_access_key == Secret(EU_AWS_SECRET)
    for text in (repr(settings), str(settings.all_profiles), f"{eu}", render_masked(settings)):
        assert not any(secret in text for secret in SECRETS), text


@pytest.mark.parametrize(
    "body",
    [
        f"lwa:\n      refresh_token: [{EU_REFRESH_TOKEN}]",
        f"lwa:\n      client_secret: '{EU_CLIENT_SECRET}${{'",
        f"lwa:\n      client_secret: {EU_CLIENT_SECRET}",  # the pair check names keys only
        f"aws:\n      secret_access_key: {EU_AWS_SECRET}",
        f"aws:\n      secret_access_key: {{x: {EU_AWS_SECRET}}}",
        f"lwa:\n      refresh_token: ${{{EU_REFRESH_TOKEN}}}",
    ],
)
def test_errors_on_secret_keys_in_profiles_do_not_show_the_value(tmp_path: Path, body: str) -> None:
    error(tmp_path, f"profiles:\n  eu:\n    {body}\n")  # `error` asserts that no secret is shown


def test_render_masked_shows_profiles_fully_resolved(tmp_path: Path) -> None:
    text = render_masked(profile_secret_settings(tmp_path))
    doc: dict[str, Any] = yaml.safe_load(text)

    eu = doc["profiles"]["eu"]
    assert list(doc["profiles"]) == ["eu", "unsigned"]
    assert {name: list(body) for name, body in eu.items()} == {
        name: list(SCHEMA[name].keys) for name in ("upstream", "lwa", "aws")
    }
    assert eu["upstream"]["region"] == "eu"
    assert eu["upstream"]["timeout_s"] == 30.0  # inherited, shown
    assert eu["lwa"]["client_id"] == "eu-app"
    assert eu["lwa"]["refresh_token"] == eu["lwa"]["client_secret"] == "***"
    assert eu["aws"]["secret_access_key"] == "***"
    assert doc["profiles"]["unsigned"]["aws"] is None
    assert doc["rdt"] == {"enabled": True, "max_cached": 10000}
    assert doc["rate_limits"]["retry_methods"] == ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]
    assert text.endswith(
        "# upstream: https://sandbox.sellingpartnerapi-na.amazon.com "
        "(SigV4 region us-east-1; signing: off)\n"
        "# profile eu: https://sandbox.sellingpartnerapi-eu.amazon.com "
        "(SigV4 region eu-west-1; signing: on)\n"
        "# profile unsigned: https://sandbox.sellingpartnerapi-na.amazon.com "
        "(SigV4 region us-east-1; signing: off)\n"
    )


def test_render_masked_with_profiles_loads_back(tmp_path: Path) -> None:
    original = profile_secret_settings(tmp_path)

    reloaded = load(tmp_path, render_masked(original))

    assert [p.name for p in reloaded.profiles] == ["eu", "unsigned"]
    for before, after in zip(original.profiles, reloaded.profiles, strict=True):
        assert after.upstream == before.upstream
        assert after.lwa.client_id == before.lwa.client_id
        assert (after.aws is None) == (before.aws is None)


def test_render_masked_hides_secrets_and_parses(tmp_path: Path) -> None:
    text = render_masked(secret_settings(tmp_path))

    assert not any(secret in text for secret in SECRETS)
    doc = yaml.safe_load(text)
    assert doc["lwa"]["client_secret"] == "***"
    assert doc["lwa"]["refresh_token"] == "***"
    assert doc["listen"]["auth_token"] == "***"
    assert doc["aws"]["secret_access_key"] == "***"
    assert doc["aws"]["access_key_id"] == "AKIAEXAMPLE"


def test_render_masked_uses_the_schema_key_names(tmp_path: Path) -> None:
    doc: dict[str, Any] = yaml.safe_load(render_masked(secret_settings(tmp_path)))

    assert {name: list(body) for name, body in doc.items()} == {
        **{name: list(section.keys) for name, section in SCHEMA.items()},
        "profiles": [],
    }


def test_render_masked_output_loads_back_to_the_same_settings(tmp_path: Path) -> None:
    original = secret_settings(tmp_path)

    reloaded = load(tmp_path, render_masked(original))

    assert reloaded.upstream == original.upstream
    assert reloaded.lwa.client_id == original.lwa.client_id
    assert reloaded.lwa.client_secret == Secret("***")
    assert reloaded.aws is not None
    assert reloaded.aws.role_session_name == "spapi-proxy"


def test_render_masked_ends_with_the_effective_upstream(tmp_path: Path) -> None:
    without_aws = render_masked(load(tmp_path))
    with_aws = render_masked(load(tmp_path, "upstream:\n  region: fe\n  sandbox: false\naws: {}\n"))

    assert without_aws.endswith(
        "# upstream: https://sandbox.sellingpartnerapi-na.amazon.com "
        "(SigV4 region us-east-1; signing: off)\n"
    )
    assert "# aws: not set" in without_aws
    assert with_aws.endswith(
        "# upstream: https://sellingpartnerapi-fe.amazon.com "
        "(SigV4 region us-west-2; signing: on)\n"
    )


# --- config.example.yaml ----------------------------------------------------------------------


def test_example_config_loads_to_the_defaults() -> None:
    assert load_settings(str(EXAMPLE), LWA_ENV) == load_settings(None, LWA_ENV)


def test_example_config_documents_every_key_and_variable() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")

    for name, section in SCHEMA.items():
        for key in section.keys:
            assert f"  {key}:" in text or f"#   {key}:" in text, f"{name}.{key}"
            assert env_name(name, key) in text, env_name(name, key)


def uncommented_example(tmp_path: Path, block: str) -> str:
    """config.example.yaml with the commented-out `block:` (up to the next blank line) enabled."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"# {block}:")
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    enabled = [line.removeprefix("# ") for line in lines[start:end]]
    return write(tmp_path, "\n".join(lines[:start] + enabled + lines[end:]) + "\n")


def test_example_config_with_aws_uncommented_enables_signing(tmp_path: Path) -> None:
    env = {**LWA_ENV, "SPAPI_ROLE_ARN": ROLE}

    settings = load_settings(uncommented_example(tmp_path, "aws"), env)

    assert settings.aws is not None
    assert settings.aws.role_arn == ROLE
    assert settings.aws.access_key_id is None


def test_example_config_with_profiles_uncommented_loads(tmp_path: Path) -> None:
    env = {**LWA_ENV, "EU_LWA_REFRESH_TOKEN": EU_REFRESH_TOKEN}

    settings = load_settings(uncommented_example(tmp_path, "profiles"), env)

    assert settings.aws is None
    assert list(settings.all_profiles) == ["default", "eu-sandbox", "production"]
    eu, production = settings.profiles
    assert (eu.upstream.region, eu.upstream.sandbox) == ("eu", True)
    assert eu.lwa.refresh_token == Secret(EU_REFRESH_TOKEN)
    assert eu.lwa.client_id == settings.lwa.client_id
    assert production.upstream.base_url == "https://sellingpartnerapi-na.amazon.com"
    assert production.upstream.timeout_s == 60.0
    assert production.lwa == settings.lwa


def test_example_config_with_profiles_uncommented_needs_the_eu_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(uncommented_example(tmp_path, "profiles"), LWA_ENV)

    assert info.value.key == "profiles.eu-sandbox.lwa.refresh_token"


# --- config path and file mode ----------------------------------------------------------------


def test_config_path_from_prefers_the_command_line() -> None:
    env = {"SPAPI_PROXY_CONFIG": "/etc/env.yaml"}

    assert config_path_from("/cli.yaml", env) == "/cli.yaml"
    assert config_path_from(None, env) == "/etc/env.yaml"
    assert config_path_from(None, {}) is None
    assert config_path_from(None, {"SPAPI_PROXY_CONFIG": ""}) is None


def mode_warning(tmp_path: Path, text: str, mode: int) -> str | None:
    path = write(tmp_path, text)
    os.chmod(path, mode)
    settings = load_settings(path, {**LWA_ENV, "FALLBACK_UNSET": ""})
    return file_mode_warning(path, settings)


def test_world_readable_file_with_literal_secret_warns(tmp_path: Path) -> None:
    warning = mode_warning(tmp_path, f"lwa:\n  client_secret: {CLIENT_SECRET}\n", 0o644)

    assert warning is not None
    assert "lwa.client_secret" in warning
    assert "0644" in warning
    assert CLIENT_SECRET not in warning


def test_fallback_inside_placeholder_counts_as_literal(tmp_path: Path) -> None:
    text = f"lwa:\n  refresh_token: ${{FALLBACK_UNSET:-{REFRESH_TOKEN}}}\n"

    warning = mode_warning(tmp_path, text, 0o640)

    assert warning is not None
    assert "lwa.refresh_token" in warning


def test_literal_secret_in_a_profile_warns(tmp_path: Path) -> None:
    text = (
        "profiles:\n  eu:\n    lwa:\n      refresh_token: ${LWA_REFRESH_TOKEN}\n"
        f"  us2:\n    lwa:\n      refresh_token: {EU_REFRESH_TOKEN}\n"
    )

    warning = mode_warning(tmp_path, text, 0o644)

    assert warning is not None
    assert "at profiles.us2.lwa.refresh_token;" in warning
    assert "profiles.eu." not in warning
    assert EU_REFRESH_TOKEN not in warning


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        (f"profiles:\n  eu:\n    lwa:\n      refresh_token: {EU_REFRESH_TOKEN}\n", 0o600),
        ("profiles:\n  eu:\n    lwa:\n      refresh_token: ${file:/run/secrets/eu}\n", 0o644),
        (f"lwa:\n  client_secret: {CLIENT_SECRET}\n", 0o600),
        ("lwa:\n  client_secret: ${LWA_CLIENT_SECRET}\n", 0o644),
        ("lwa:\n  client_secret: ${file:/run/secrets/x}${LWA_CLIENT_SECRET:-}\n", 0o644),
        ("listen:\n  auth_token: ''\n", 0o644),
        ("upstream:\n  user_agent: not-a-secret\n", 0o666),
    ],
)
def test_no_warning_for_private_files_or_placeholders(tmp_path: Path, text: str, mode: int) -> None:
    path = write(tmp_path, text)
    os.chmod(path, mode)
    settings = load_settings(None, LWA_ENV)

    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert file_mode_warning(path, settings) is None


def test_a_variable_holding_a_file_placeholder_reads_the_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "lwa_client_secret"
    secret_file.write_text("secret-from-a-mounted-file\n")
    environ = {
        "LWA_CLIENT_ID": "amzn1.application-oa2-client.x",
        "LWA_CLIENT_SECRET": f"${{file:{secret_file}}}",
        "LWA_REFRESH_TOKEN": "Atzr|refresh",
    }
    settings = load_settings(None, environ)
    assert settings.lwa.client_secret.reveal() == "secret-from-a-mounted-file"
    # anything else in a variable's value stays literal
    environ["LWA_CLIENT_SECRET"] = "prefix-${file:/etc/hostname}"
    assert load_settings(None, environ).lwa.client_secret.reveal() == "prefix-${file:/etc/hostname}"
