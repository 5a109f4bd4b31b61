"""Redaction (``_redact``): the one home of what counts as a secret and how it is removed."""

from __future__ import annotations

import pytest

from cartesia_stt_async._redact import Secrets, redact, redact_url, secrets_in

# -- redact --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("key sk_abcdef and sk_abcdef", ["sk_abcdef"], "key *** and ***"),
        ("Authorization: Bearer sk_live_1234", ["sk_live_1234"], "Authorization: Bearer ***"),
        ("a=sk_1234 b=tok_5678", ["sk_1234", "tok_5678"], "a=*** b=***"),
        ("abcd", ["abcd"], "***"),
        ("abc", ["abc"], "abc"),  # secrets under 4 characters are ignored
        ("abc", ["", "a"], "abc"),
        ("nothing here", ["sk_secret"], "nothing here"),
        ("nothing here", [], "nothing here"),
    ],
)
def test_redact(text: str, secrets: list[str], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_redact_takes_any_iterable() -> None:
    assert redact("x sk_abcd y", (s for s in ["sk_abcd"])) == "x *** y"


def test_the_client_registry_holds_key_headers_and_proxy_credentials() -> None:
    secrets = Secrets.for_client(
        "sk_key_0001",
        {"X-Api-Token": "tok_header_0002", "X-Trace": "plain-value"},
        "http://proxyuser:proxypass@proxy.example:3128",
    )
    shown = secrets.redact("sk_key_0001 tok_header_0002 proxyuser proxypass plain-value")
    assert shown == "*** *** *** *** plain-value"
    session = secrets.copy()
    session.add(*secrets_in({"access_token": "at_query_0003"}))
    assert session.redact("at_query_0003") == "***"
    assert secrets.redact("at_query_0003") == "at_query_0003"  # the client's stays as it was
    assert redact_url("wss://h/stt?api_key=abc&model=ink-2", secrets) == (
        "wss://h/stt?api_key=***&model=ink-2"
    )
