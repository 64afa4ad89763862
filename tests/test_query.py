"""encode_query: the client's raw query → the RFC 3986 string sent upstream and signed."""

from __future__ import annotations

import random
import re
from urllib.parse import quote_from_bytes, unquote_to_bytes

import pytest

from proxy.errors import InvalidRequest
from proxy.forwarding.query import _ALREADY_CANONICAL, _reencode, encode_query

_OUTPUT_CHARS = re.compile(r"[A-Za-z0-9\-._~%=&]*")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("", "", id="empty"),
        pytest.param(
            "CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER",
            "CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER",
            id="sandbox-unchanged",
        ),
        pytest.param("MarketplaceIds=A,B", "MarketplaceIds=A%2CB", id="comma"),
        pytest.param("q=a+b", "q=a%20b", id="plus-is-space"),
        pytest.param("q=a%20b", "q=a%20b", id="space-escape-kept"),
        pytest.param("q=a%2Bb", "q=a%2Bb", id="literal-plus-kept"),
        pytest.param("q=a%2bb", "q=a%2Bb", id="lowercase-hex-uppercased"),
        pytest.param("NextToken=ab/c+d==", "NextToken=ab%2Fc%20d%3D%3D", id="split-at-first-eq"),
        pytest.param("q=%c3%a9", "q=%C3%A9", id="utf8-escapes-uppercased"),
        pytest.param("q=é", "q=%C3%A9", id="raw-utf8"),
        pytest.param("q=%FF", "q=%FF", id="not-utf8-kept"),
        pytest.param("q=\udcff", "q=%FF", id="raw-non-utf8-byte-from-aiohttp"),
        pytest.param("q=~", "q=~", id="tilde"),
        pytest.param("q=%7E", "q=~", id="escaped-unreserved-decoded"),
        pytest.param("%41=%2d", "A=-", id="escaped-unreserved-key"),
        pytest.param("a=1&a=2&a=", "a=1&a=2&a=", id="repeated-keys-in-order"),
        pytest.param("b=2&a=1", "b=2&a=1", id="order-not-sorted"),
        pytest.param("a=", "a=", id="empty-value"),
        pytest.param("a", "a=", id="bare-key"),
        pytest.param("a&b=1", "a=&b=1", id="bare-key-among-pairs"),
        pytest.param("a=1&&b=2", "a=1&b=2", id="empty-pair"),
        pytest.param("a=1&", "a=1", id="trailing-amp"),
        pytest.param("&a=1", "a=1", id="leading-amp"),
        pytest.param("&&", "", id="only-amps"),
        pytest.param("=v", "=v", id="empty-key-kept"),
        pytest.param("a b=c d", "a%20b=c%20d", id="raw-space"),
        pytest.param("q=a%25b", "q=a%25b", id="literal-percent"),
        pytest.param("q=#x", "q=%23x", id="hash"),
    ],
)
def test_examples(raw: str, expected: str) -> None:
    assert encode_query(raw) == expected


@pytest.mark.parametrize(
    ("raw", "name", "value"),
    [
        pytest.param("NextToken=Atza|secret%", "NextToken", "Atza|secret", id="lone-percent"),
        pytest.param("NextToken=Atza|secret%4", "NextToken", "Atza|secret", id="one-digit"),
        pytest.param("NextToken=%zzAtza|secret", "NextToken", "Atza|secret", id="not-hex"),
        pytest.param("NextToken=%+1Atza|secret", "NextToken", "Atza|secret", id="sign-not-hex"),
        pytest.param("a=1&NextToken=x%g1secret", "NextToken", "secret", id="second-pair"),
        pytest.param("Next%zzToken=secret", "Next%zzToken", "secret", id="in-key"),
        pytest.param("NextToken=Atza\x01secret", "NextToken", "Atza", id="control-char"),
        pytest.param("NextToken=Atza\x7fsecret", "NextToken", "Atza", id="del"),
        pytest.param("NextToken=Atza\nsecret", "NextToken", "Atza", id="newline"),
    ],
)
def test_malformed_names_parameter_not_value(raw: str, name: str, value: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        encode_query(raw)
    shown = f"{caught.value}\n{caught.value.details}"
    assert f"'{name}'" in shown
    assert value not in shown
    assert caught.value.status == 400


def test_unprintable_parameter_name_is_sanitised() -> None:
    with pytest.raises(InvalidRequest) as caught:
        encode_query("bad\x1bname=1")
    assert "\x1b" not in str(caught.value)
    assert "'bad?name'" in str(caught.value)


@pytest.mark.parametrize("byte", range(256))
def test_every_escape_decodes_and_reencodes(byte: int) -> None:
    # Exhaustive over bytes: pins the fast path's list of already-canonical escapes.
    expected = f"k={quote_from_bytes(bytes([byte]), '-_.~')}"
    assert encode_query(f"k=%{byte:02X}") == expected
    assert encode_query(f"k=%{byte:02x}") == expected


_PIECES = [
    *"abcXYZ019-_.~",
    "+",
    ",",
    "/",
    "=",
    "&",
    "&&",
    " ",
    ":",
    "@",
    "é",
    "€",
    "\udcff",
    "%20",
    "%2B",
    "%2b",
    "%25",
    "%3D",
    "%26",
    "%e2%82%ac",
    "%FF",
    "%41",
    "%7E",
]


def _random_raw_query(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 30)))


def _decoded_pairs(query: str, *, plus_is_space: bool) -> list[tuple[bytes, bytes]]:
    """An independent oracle for the meaning of a query: urllib's decoding, pair by pair."""
    data = query.encode("utf-8", "surrogateescape").decode("latin-1")
    pairs = []
    for pair in data.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if plus_is_space:
            key, value = key.replace("+", " "), value.replace("+", " ")
        pairs.append((_latin1_unquote(key), _latin1_unquote(value)))
    return pairs


def _latin1_unquote(text: str) -> bytes:
    return unquote_to_bytes(text.encode("latin-1"))


@pytest.mark.parametrize("seed", range(20))
def test_random_queries_keep_meaning(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        raw = _random_raw_query(rng)
        sent = encode_query(raw)
        assert _OUTPUT_CHARS.fullmatch(sent), (raw, sent)
        assert "+" not in sent
        assert _decoded_pairs(sent, plus_is_space=False) == _decoded_pairs(
            raw, plus_is_space=True
        ), (raw, sent)
        assert encode_query(sent) == sent, "output must already be canonical"
        assert _ALREADY_CANONICAL.fullmatch(sent) or not sent, "fast path must accept it"


@pytest.mark.parametrize("seed", range(5))
def test_fast_path_agrees_with_full_reencoding(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [*"aZ9-_.~=&", "%2C", "%2F", "%41", "%2c", "%FF", "%7E", "%20"]
    for _ in range(500):
        raw = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 20)))
        if _ALREADY_CANONICAL.fullmatch(raw):
            assert _reencode(raw) == raw
