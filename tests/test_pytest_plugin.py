"""The pytest plugin: its fixtures work in a fresh pytest process that only has the package
installed, and the example of docs/testing.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def example_tests() -> str:
    """The code block of docs/testing.md that holds the example test."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    examples = [block for block in blocks if "def test_" in block]
    assert len(examples) == 1, "docs/testing.md should hold exactly one example test"
    return str(examples[0])


def test_the_documented_report_and_feed_example_passes_through_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_example=example_tests())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


PLUGIN_FIXTURES = """
import dataclasses
import json
import urllib.request

import pytest


@pytest.fixture
def spapi_emulator_config(spapi_emulator_config):
    return dataclasses.replace(spapi_emulator_config, queued_s=600.0)


def get(url):
    with urllib.request.urlopen(url) as response:
        return response.status, json.load(response)


def post(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        return response.status, json.load(response)


def test_fixtures_give_urls_credentials_recorded_calls_and_take_a_config(
    spapi_proxy, spapi_emulator
):
    assert spapi_proxy.emulator is spapi_emulator
    assert spapi_emulator.lwa_token_url == spapi_emulator.url + "/auth/o2/token"
    assert spapi_emulator.config.client_id.startswith("amzn1.application-oa2-client.")
    orders = "/orders/v0/orders?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER"
    status, _ = get(spapi_proxy.url + orders)
    assert status == 200
    status, created = post(
        spapi_proxy.url + "/reports/2021-06-30/reports",
        {"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": ["ATVPDKIKX0DER"]},
    )
    assert status == 202
    _, report = get(spapi_proxy.url + "/reports/2021-06-30/reports/" + created["reportId"])
    assert report["processingStatus"] == "IN_QUEUE"
    calls = spapi_emulator.calls()
    assert [(c["operation"], c["tokenKind"], c["signatureOk"]) for c in calls] == [
        ("getOrders", "seller", True),
        ("createReport", "seller", True),
        ("getReport", "seller", True),
    ]
    spapi_emulator.clear_calls()
    assert spapi_emulator.calls() == []


def test_each_test_gets_its_own_emulator(spapi_emulator):
    assert spapi_emulator.calls() == []
"""


def test_the_fixtures_work_in_a_fresh_pytest_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixtures=PLUGIN_FIXTURES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
