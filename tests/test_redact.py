"""The log redactor: configured secrets stay masked for good, fetched ones rotate, shapes always."""

from __future__ import annotations

import logging
import sys

from proxy.observability.redact import MASK, RedactingFilter, Redactor


def test_configured_secrets_outlive_any_number_of_fetched_ones() -> None:
    redactor = Redactor(max_fetched=4)
    redactor.add("configured-client-secret", configured=True)
    for number in range(100):
        redactor.add(f"sts-secret-access-key-{number:04d}")
    text = "a configured-client-secret b sts-secret-access-key-0099 c sts-secret-access-key-0000"
    assert redactor.scrub(text) == f"a {MASK} b {MASK} c sts-secret-access-key-0000"


def test_token_shapes_and_signatures_are_masked_without_being_known() -> None:
    redactor = Redactor()
    signature = "Signature=" + "ab" * 32
    text = f"Atza|IwEBIExample Atzr|refresh Atz.sprdt|rdt {signature}"
    assert redactor.scrub(text) == f"{MASK} {MASK} {MASK} Signature={MASK}"


def test_a_secret_containing_another_is_masked_whole() -> None:
    redactor = Redactor()
    redactor.add("secret-abcdefgh")
    redactor.add("long-secret-abcdefgh-tail")
    assert redactor.scrub("x long-secret-abcdefgh-tail y") == f"x {MASK} y"


def test_filter_masks_message_arguments_and_tracebacks() -> None:
    redactor = Redactor()
    redactor.add("aws-secret-value-123", configured=True)
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "key=%s", ("aws-secret-value-123",), None
    )
    try:
        raise ValueError("boom aws-secret-value-123")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactingFilter(redactor).filter(record)
    assert record.getMessage() == f"key={MASK}"
    assert record.exc_text is not None
    assert "aws-secret-value-123" not in record.exc_text


def test_security_token_header_is_masked_in_any_case() -> None:
    redactor = Redactor()
    for name in ("x-amz-security-token", "X-Amz-Security-Token", "X-AMZ-SECURITY-TOKEN"):
        assert redactor.scrub(f"{name}: FwoGZXIvYXdzEJr") == f"{name}: {MASK}"


def test_outside_error_text_loses_token_shapes() -> None:
    assert Redactor().scrub("bad token Atza|abc123 given") == f"bad token {MASK} given"
