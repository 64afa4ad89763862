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

from proxy.config import (
    SCHEMA,
    ConfigError,
    check_exposure,
    config_path_from,
    env_name,
    file_mode_warning,
    load_settings,
    render_masked,
)
from proxy.secret import Secret
from proxy.settings import ListenSettings, Settings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"

# Distinctive values so a leak is found by a plain substring search.
CLIENT_SECRET = "amzn1.oa2-cs.v1.LEAKCHECK-client-secret-7f3a"
REFRESH_TOKEN = "Atzr|LEAKCHECK-refresh-token-91bd"
AWS_SECRET = "LEAKCHECK/aws+secret/key/0c2e"
AUTH_TOKEN = "LEAKCHECK-auth-token-55aa"
SECRETS = (CLIENT_SECRET, REFRESH_TOKEN, AWS_SECRET, AUTH_TOKEN)

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
        "listen:\n  drain_timeout_s: 0\n"
        "lwa:\n  token_headers: [X-Amz-Access-Token, x-amz-access-token]\n"
        f"aws:\n  role_arn: {ROLE}\n"
    )

    settings = load(tmp_path, text)

    assert settings.upstream.region == "eu"
    assert settings.upstream.endpoint == "http://127.0.0.1:9000"
    assert settings.upstream.ca_bundle == str(ca)
    assert settings.listen.drain_timeout_s == 0.0
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
        name: list(section.keys) for name, section in SCHEMA.items()
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


def test_example_config_with_aws_uncommented_enables_signing(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = lines.index("# aws:")
    uncommented = lines[:start] + [line.removeprefix("# ") for line in lines[start:]]
    env = {**LWA_ENV, "SPAPI_ROLE_ARN": ROLE}

    settings = load_settings(write(tmp_path, "\n".join(uncommented)), env)

    assert settings.aws is not None
    assert settings.aws.role_arn == ROLE
    assert settings.aws.access_key_id is None


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


@pytest.mark.parametrize(
    ("text", "mode"),
    [
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
