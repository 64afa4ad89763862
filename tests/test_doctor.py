"""`spapi-proxy doctor` against the emulator, moto's STS and small fakes: one verdict per check."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.config.settings import Profile, Settings, UpstreamSettings
from proxy.doctor import (
    PROBE_PATH,
    Check,
    Report,
    displayed,
    doctor_main,
    run_doctor,
    upstream_verdict,
)
from proxy.emulator import EmulatorConfig, create_emulator_app
from proxy.emulator.responses import FRONT_DOOR_400_HTML
from proxy.forwarding.diagnosis import APP_NOT_AUTHORIZED, HINT_HEADER
from proxy.observability.redact import Redactor
from proxy.secret import Secret
from tests.conftest import (
    ServerFactory,
    emulator_state,
    moto_aws_settings,
    moto_key_lookup,
    settings_for,
    url_of,
)
from tests.support.clock import FakeClock
from tests.support.moto_sts import MotoSts, free_port
from tests.test_cli_e2e import write_config

SCRIPT = str(Path(sys.executable).parent / "spapi-proxy")


async def doctor(settings: Settings) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = await run_doctor(settings, out)
    return code, out.getvalue().splitlines()


def line_for(lines: list[str], subject: str, profile: str = "default") -> str:
    (found,) = [line for line in lines if f"[{profile}] {subject}:" in line]
    return found


def probe_calls(server: TestServer) -> list[str]:
    return [r.raw_target for r in emulator_state(server).received if r.raw_target == PROBE_PATH]


async def test_healthy_config_passes_every_check(
    emulator: TestServer, emulator_config: EmulatorConfig
) -> None:
    code, lines = await doctor(settings_for(emulator, emulator_config))

    assert code == 0, lines
    assert lines[0].startswith("ok   config: ")
    lwa = line_for(lines, "LWA token")
    token_url = f"{url_of(emulator)}/auth/o2/token"
    assert lwa == f"ok   [default] LWA token: fetched from {token_url}, valid 3600 s"
    aws = line_for(lines, "AWS credentials")
    assert aws == "skip [default] AWS credentials: no aws section, requests are LWA-only"
    upstream = line_for(lines, "SP-API call")
    assert upstream.startswith(f"ok   [default] SP-API call: GET {PROBE_PATH} via ")
    assert "answered 200 (x-amzn-RequestId " in upstream
    assert lines[-1] == "doctor: 3 ok, 0 failed"
    assert probe_calls(emulator) == [PROBE_PATH]  # the upstream was really called, once


async def test_revoked_refresh_token_names_invalid_grant_and_exits_1(
    emulator: TestServer, emulator_config: EmulatorConfig
) -> None:
    settings = settings_for(emulator, emulator_config)
    revoked = dataclasses.replace(settings.lwa, refresh_token=Secret("Atzr|revoked-long-ago"))
    code, lines = await doctor(dataclasses.replace(settings, lwa=revoked))

    assert code == 1
    lwa = line_for(lines, "LWA token")
    assert lwa.startswith("FAIL [default] LWA token: LWA refused the refresh token (invalid_grant)")
    assert "re-authorize the app and update lwa.refresh_token" in lwa
    assert line_for(lines, "SP-API call").startswith("skip ")
    assert lines[-1] == "doctor: 1 ok, 1 failed"
    assert "revoked-long-ago" not in "\n".join(lines)
    assert probe_calls(emulator) == []


async def test_wrong_client_secret_says_to_update_it(
    emulator: TestServer, emulator_config: EmulatorConfig
) -> None:
    settings = settings_for(emulator, emulator_config)
    wrong = dataclasses.replace(settings.lwa, client_secret=Secret("not-the-client-secret"))
    code, lines = await doctor(dataclasses.replace(settings, lwa=wrong))

    assert code == 1
    lwa = line_for(lines, "LWA token")
    assert "(invalid_client)" in lwa
    assert "lwa.client_secret" in lwa
    assert "not-the-client-secret" not in "\n".join(lines)


async def test_unreachable_lwa_is_a_failure_naming_the_token_url(
    emulator: TestServer, emulator_config: EmulatorConfig
) -> None:
    settings = settings_for(emulator, emulator_config)
    closed = f"http://127.0.0.1:{free_port()}/auth/o2/token"
    lwa = dataclasses.replace(settings.lwa, token_url=closed, timeout_s=1.0)
    code, lines = await doctor(dataclasses.replace(settings, lwa=lwa))

    assert code == 1
    line = line_for(lines, "LWA token")
    assert line.startswith("FAIL ")
    assert closed in line
    assert "lwa.token_url" in line


async def test_aws_role_is_assumed_once_and_the_signed_call_passes(
    aiohttp_server: ServerFactory, clock: FakeClock, moto_sts: MotoSts
) -> None:
    config = EmulatorConfig(clock=clock, extra_credentials=moto_key_lookup(moto_sts))
    emulator = await aiohttp_server(create_emulator_app(config))
    code, lines = await doctor(settings_for(emulator, config, aws=moto_aws_settings(moto_sts)))

    assert code == 0, lines
    aws = line_for(lines, "AWS credentials")
    assert aws.startswith(f"ok   [default] AWS credentials: assumed {moto_sts.role_arn} via STS")
    assert "signing for us-east-1" in aws
    assert lines[-1] == "doctor: 4 ok, 0 failed"
    assert moto_sts.secret_access_key not in "\n".join(lines)


async def test_sts_refusal_is_explained_and_the_call_skipped(
    emulator: TestServer, emulator_config: EmulatorConfig, moto_sts: MotoSts
) -> None:
    aws = dataclasses.replace(moto_aws_settings(moto_sts), secret_access_key=Secret("wrong-key"))
    code, lines = await doctor(settings_for(emulator, emulator_config, aws=aws))

    assert code == 1
    line = line_for(lines, "AWS credentials")
    assert line.startswith("FAIL ")
    assert "SignatureDoesNotMatch" in line
    assert "aws.secret_access_key" in line
    assert line_for(lines, "SP-API call").startswith("skip ")
    assert "wrong-key" not in "\n".join(lines)


async def test_unreachable_upstream_reports_the_proxys_error(
    emulator: TestServer, emulator_config: EmulatorConfig
) -> None:
    settings = settings_for(emulator, emulator_config)
    closed = UpstreamSettings(endpoint=f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    code, lines = await doctor(dataclasses.replace(settings, upstream=closed))

    assert code == 1
    line = line_for(lines, "SP-API call")
    assert line.startswith("FAIL ")
    assert "the proxy answered 502 UpstreamUnreachable" in line


async def test_seller_who_never_authorized_the_app_gets_the_authorization_hint(
    aiohttp_server: ServerFactory, emulator: TestServer, emulator_config: EmulatorConfig
) -> None:
    """LWA works, SP-API says "denied" with empty details to a plain seller call."""

    async def denied(request: web.Request) -> web.Response:
        error = {"code": "Unauthorized", "message": "Access to requested resource is denied."}
        body = {"errors": [{**error, "details": ""}]}
        return web.json_response(body, status=403, headers={"x-amzn-RequestId": "req-denied-1"})

    fake = web.Application()
    fake.router.add_get(PROBE_PATH, denied)
    sp_api = await aiohttp_server(fake)
    settings = settings_for(emulator, emulator_config)
    upstream = UpstreamSettings(endpoint=url_of(sp_api), timeout_s=5.0)
    code, lines = await doctor(dataclasses.replace(settings, upstream=upstream))

    assert code == 1
    line = line_for(lines, "SP-API call")
    assert line.startswith("FAIL ")
    assert "SP-API answered 403 Unauthorized: Access to requested resource is denied." in line
    assert "req-denied-1" in line
    assert line.endswith(APP_NOT_AUTHORIZED)


async def test_each_profile_is_checked_against_its_own_upstream(
    aiohttp_server: ServerFactory,
    emulator: TestServer,
    emulator_config: EmulatorConfig,
    clock: FakeClock,
) -> None:
    eu_emulator = await aiohttp_server(create_emulator_app(EmulatorConfig(clock=clock)))
    settings = settings_for(emulator, emulator_config)
    eu = settings_for(eu_emulator, emulator_config)
    eu_profile = Profile("eu", dataclasses.replace(eu.upstream, region="eu"), eu.lwa)
    code, lines = await doctor(dataclasses.replace(settings, profiles=(eu_profile,)))

    assert code == 0, lines
    assert lines[0].endswith("2 profiles (default, eu)")
    assert line_for(lines, "SP-API call", "eu").startswith("ok   [eu] SP-API call:")
    assert lines[-1] == "doctor: 5 ok, 0 failed"
    # x-spapi-profile took the eu probe to the eu upstream, and only there.
    assert probe_calls(emulator) == [PROBE_PATH]
    assert probe_calls(eu_emulator) == [PROBE_PATH]


async def test_a_broken_named_profile_fails_alone(
    emulator: TestServer, emulator_config: EmulatorConfig
) -> None:
    settings = settings_for(emulator, emulator_config)
    broken = dataclasses.replace(settings.lwa, refresh_token=Secret("Atzr|someone-elses-token"))
    profile = Profile("fe", settings.upstream, broken)
    code, lines = await doctor(dataclasses.replace(settings, profiles=(profile,)))

    assert code == 1
    assert line_for(lines, "SP-API call").startswith("ok   ")
    assert "(invalid_grant)" in line_for(lines, "LWA token", "fe")
    assert line_for(lines, "SP-API call", "fe").startswith("skip ")
    assert lines[-1] == "doctor: 3 ok, 1 failed"


async def test_a_proxy_with_a_client_key_is_called_with_it(
    emulator: TestServer, emulator_config: EmulatorConfig
) -> None:
    key = "doctor-client-key-123"
    code, lines = await doctor(settings_for(emulator, emulator_config, auth_token=Secret(key)))

    assert code == 0, lines
    assert key not in "\n".join(lines)


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def test_the_proxys_hint_header_is_preferred_to_the_doctors_own() -> None:
    body = json.dumps({"errors": [{"code": "Unauthorized", "message": "Denied.", "details": ""}]})
    answer = headers(Content_Type="application/json", **{HINT_HEADER: "the proxy's own words"})
    check = upstream_verdict("default", "GET /x", 403, answer, body.encode())

    assert check.verdict == "FAIL"
    assert check.text.endswith("-> the proxy's own words")


def test_an_html_400_is_named_as_amazons_edge() -> None:
    answer = headers(Content_Type="text/html")
    check = upstream_verdict("default", "GET /x", 400, answer, FRONT_DOOR_400_HTML.encode())

    assert check.verdict == "FAIL"
    assert "SP-API answered 400 with an HTML page (Amazon's edge, not SP-API)" in check.text
    assert "Amazon's edge refused this before SP-API" in check.text


def test_a_config_error_names_the_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "spapi-proxy.yaml"
    config.write_text("lwa:\n  client_id: ${DOCTOR_TEST_UNSET_VARIABLE}\n")
    out = io.StringIO()
    code = doctor_main(str(config), {}, out)

    lines = out.getvalue().splitlines()
    assert code == 2
    assert lines[0].startswith("FAIL config: ")
    assert "lwa.client_id" in lines[0]
    assert "DOCTOR_TEST_UNSET_VARIABLE" in lines[0]
    assert lines[-1] == "doctor: 0 ok, 1 failed"


async def test_spapi_proxy_doctor_command_exits_0_and_prints_no_secret(
    emulator: TestServer, emulator_config: EmulatorConfig, tmp_path: Path
) -> None:
    # DEBUG, so every log line the proxy and the doctor write is searched for secrets too.
    env = {
        **os.environ,
        "LWA_CLIENT_ID": emulator_config.client_id,
        "LWA_CLIENT_SECRET": emulator_config.client_secret,
        "LWA_REFRESH_TOKEN": emulator_config.refresh_token,
    }
    env.pop("SPAPI_PROXY_CONFIG", None)
    config = write_config(tmp_path, emulator, free_port())
    # asyncio's subprocess: the emulator serves from this test's event loop, which must not block.
    process = await asyncio.create_subprocess_exec(
        SCRIPT,
        "doctor",
        "--config",
        str(config),
        "--log-level",
        "DEBUG",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    output, log = stdout.decode(), stderr.decode()

    assert process.returncode == 0, output + log
    assert output.splitlines()[-1] == "doctor: 3 ok, 0 failed"
    sent_tokens = [
        value
        for received in emulator_state(emulator).received
        for name, value in received.headers
        if name.lower() == "x-amz-access-token"
    ]
    assert sent_tokens  # the probe reached the emulator with a token, which must not be printed
    for secret in (emulator_config.client_secret, emulator_config.refresh_token, *sent_tokens):
        assert secret not in output
        assert secret not in log
    assert "Atza|" not in output + log


def test_report_lines_are_redacted_and_single() -> None:
    redactor = Redactor()
    redactor.add("configured-client-secret")
    out = io.StringIO()
    report = Report(out, redactor)
    report.add(Check("FAIL", "LWA token", "echoed configured-client-secret and\nAtza|abc123", "p"))

    assert out.getvalue() == "FAIL [p] LWA token: echoed *** and ***\n"
    assert report.finish() == 1


def test_urls_are_printed_without_credentials_or_query() -> None:
    assert displayed("https://user:pw@example.com/auth/o2/token?key=v") == (
        "https://example.com/auth/o2/token"
    )
