"""`spapi-proxy doctor` with shared_state: one line saying whether Redis answers, never its
password."""

from __future__ import annotations

import dataclasses
import io

from aiohttp.test_utils import TestServer

from proxy.config.settings import Settings, SharedStateSettings
from proxy.doctor import run_doctor
from proxy.emulator import EmulatorConfig
from proxy.secret import Secret
from tests.conftest import settings_for
from tests.support.moto_sts import free_port
from tests.support.redis_server import REDIS_PASSWORD, RedisServer

KEY = Secret("doctor-test-encryption-key-0123456789")


def with_redis(settings: Settings, url: str) -> Settings:
    shared = SharedStateSettings(redis_url=Secret(url), encryption_key=KEY, timeout_s=0.5)
    return dataclasses.replace(settings, shared_state=shared)


async def doctor(settings: Settings) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = await run_doctor(settings, out)
    return code, out.getvalue().splitlines()


def shared_state_line(lines: list[str]) -> str:
    (found,) = [line for line in lines if " shared state: " in line]
    return found


async def test_doctor_says_redis_answers(
    emulator: TestServer, emulator_config: EmulatorConfig, redis_server: RedisServer
) -> None:
    settings = with_redis(settings_for(emulator, emulator_config), redis_server.url)
    code, lines = await doctor(settings)
    assert code == 0, lines
    line = shared_state_line(lines)
    assert line.startswith("ok   shared state: Redis at redis://127.0.0.1:")
    assert REDIS_PASSWORD not in "\n".join(lines)


async def test_doctor_fails_on_a_redis_that_does_not_answer_and_says_what_to_check(
    emulator: TestServer, emulator_config: EmulatorConfig, redis_server: RedisServer
) -> None:
    nobody = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    code, lines = await doctor(with_redis(settings_for(emulator, emulator_config), nobody))
    assert code == 1
    line = shared_state_line(lines)
    assert line.startswith("FAIL shared state: ")
    assert "shared_state.redis_url" in line
    assert REDIS_PASSWORD not in "\n".join(lines)


async def test_doctor_names_a_wrong_redis_password(
    emulator: TestServer, emulator_config: EmulatorConfig, redis_server: RedisServer
) -> None:
    wrong = redis_server.url.replace(REDIS_PASSWORD, "not-the-password")
    code, lines = await doctor(with_redis(settings_for(emulator, emulator_config), wrong))
    assert code == 1
    line = shared_state_line(lines)
    assert "password" in line
    assert "not-the-password" not in "\n".join(lines)
