"""protocol/checks.py: the one home of the numeric option checks, with their exact messages.

Every SDK module checks its numeric options here (issue 21, "one home per rule"); the last tests
pin that the options of each module reach these checks (same messages, same rules).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest

from cartesia_stt_async import AsyncCartesia
from cartesia_stt_async._access_token import MAX_EXPIRES_IN
from cartesia_stt_async._config import SessionConfig
from cartesia_stt_async.cli import _speed
from cartesia_stt_async.errors import UsageError
from cartesia_stt_async.protocol.checks import (
    check_catch_up,
    check_int,
    check_number,
    check_speed,
    check_timeout,
)
from cartesia_stt_async.protocol.pacing import Pacer
from cartesia_stt_async.vad import VadFinalizer

NOT_NUMBERS: list[object] = [True, False, "1", b"1", [1], 1j, object()]
NOT_FINITE = [math.nan, math.inf, -math.inf]


def refused(call: Callable[..., object], *args: object, **kwargs: object) -> str:
    """The text of the UsageError that ``call(*args, **kwargs)`` raises."""
    with pytest.raises(UsageError) as info:
        call(*args, **kwargs)
    return str(info.value)


# -- check_number -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [*NOT_NUMBERS, *NOT_FINITE, None])
def test_number_refuses_bools_non_numbers_non_finite_and_none(bad: object) -> None:
    assert refused(check_number, "x", bad) == f"x must be a finite number, got {bad!r}"


@pytest.mark.parametrize(
    ("kwargs", "bad", "text"),
    [
        ({"low": 0.0}, -1, "x must be a finite number >= 0.0, got -1"),
        ({"low": 0.0}, -1e-300, "x must be a finite number >= 0.0, got -1e-300"),
        ({"low": 0.0, "strict": True}, 0, "x must be a finite number > 0.0, got 0"),
        ({"low": 0.0, "strict": True}, 0.0, "x must be a finite number > 0.0, got 0.0"),
        ({"low": 1.0}, 0.5, "x must be a finite number >= 1.0, got 0.5"),
        ({"low": 0.0, "none": True}, -1, "x must be a finite number >= 0.0 or None, got -1"),
        ({"low": 0.0, "none": True}, True, "x must be a finite number >= 0.0 or None, got True"),
        (
            {"low": 0, "strict": True, "wanted": "a positive number"},
            0,
            "x must be a positive number, got 0",
        ),
        ({"low": 0, "wanted": "0 or more"}, math.nan, "x must be 0 or more, got nan"),
    ],
)
def test_number_bounds_and_messages(kwargs: dict[str, object], bad: object, text: str) -> None:
    assert refused(check_number, "x", bad, **kwargs) == text


def test_number_accepts_and_returns_a_float() -> None:
    assert check_number("x", 0, low=0.0) == 0.0
    assert type(check_number("x", 3, low=0.0)) is float
    assert check_number("x", -5.5) == -5.5  # no bound: any finite number
    assert check_number("x", 1e-300, low=0.0, strict=True) == 1e-300
    assert check_number("x", 1.0, low=1.0) == 1.0
    assert check_number("x", None, low=0.0, none=True) is None


# -- check_int ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [*NOT_NUMBERS, *NOT_FINITE, 2.0, 0, -1, None])
def test_int_refuses_bools_floats_non_numbers_and_out_of_bounds(bad: object) -> None:
    assert refused(check_int, "n", bad, low=1) == f"n must be an int >= 1, got {bad!r}"


@pytest.mark.parametrize(
    ("kwargs", "bad", "text"),
    [
        ({"low": 0, "none": True}, -1, "n must be an int >= 0 or None, got -1"),
        ({"low": 1, "high": 10}, 11, "n must be an int from 1 to 10, got 11"),
        ({"low": 1, "high": 10}, 0, "n must be an int from 1 to 10, got 0"),
        (
            {"low": 1, "high": 10, "none": True},
            False,
            "n must be an int from 1 to 10 or None, got False",
        ),
        ({"low": 1, "wanted": "a count"}, 0, "n must be a count, got 0"),
    ],
)
def test_int_bounds_and_messages(kwargs: dict[str, object], bad: object, text: str) -> None:
    assert refused(check_int, "n", bad, **kwargs) == text


def test_int_accepts_its_bounds_and_none_where_allowed() -> None:
    assert check_int("n", 1, low=1, high=10) == 1
    assert check_int("n", 10, low=1, high=10) == 10
    assert check_int("n", 0, low=0) == 0
    assert check_int("n", None, low=1, none=True) is None


# -- check_speed, check_catch_up, check_timeout -------------------------------------------------


@pytest.mark.parametrize("bad", [*NOT_NUMBERS, math.nan])
def test_speed_refuses_what_is_not_a_number(bad: object) -> None:
    text = f"speed must be a positive number or None, got {bad!r}"
    assert refused(check_speed, bad) == text


@pytest.mark.parametrize("bad", [0, 0.0, -1, -math.inf])
def test_speed_refuses_zero_and_negative(bad: object) -> None:
    text = f"speed must be positive (1.0 is real time), got {bad!r}"
    assert refused(check_speed, bad) == text


def test_speed_names_the_option_and_takes_the_callers_wording() -> None:
    assert refused(check_speed, -1, "pace").startswith("pace must be positive")
    for bad in (-1.0, math.nan):
        text = f"--speed must be 0 (unpaced) or positive, got {bad!r}"
        assert refused(check_speed, bad, "--speed", wanted="0 (unpaced) or positive") == text


def test_speed_none_and_infinity_are_unpaced() -> None:
    assert check_speed(None) is None
    assert check_speed(math.inf) is None
    assert check_speed(2) == 2.0 and type(check_speed(2)) is float


@pytest.mark.parametrize("bad", [0.5, 0, -1, *NOT_FINITE, *NOT_NUMBERS, None])
def test_catch_up_is_a_finite_number_at_least_one(bad: object) -> None:
    text = f"catch_up_speed must be a finite number >= 1.0, got {bad!r}"
    assert refused(check_catch_up, bad) == text
    assert check_catch_up(1) == 1.0


@pytest.mark.parametrize("bad", [-1, -0.001, *NOT_FINITE, *NOT_NUMBERS])
def test_timeout_is_seconds_at_least_zero_or_none(bad: object) -> None:
    text = f"timeout must be a number of seconds >= 0 or None, got {bad!r}"
    assert refused(check_timeout, "timeout", bad) == text
    assert check_timeout("timeout", None) is None
    assert check_timeout("timeout", 0) == 0.0


# -- every module's options reach the shared checks ----------------------------------------------


def config(**options: object) -> SessionConfig:
    return SessionConfig.build("ink-2", "pcm_s16le", 16000, **options)


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"speed": True}, "speed must be a positive number or None, got True"),
        ({"speed": 0}, "speed must be positive (1.0 is real time), got 0"),
        ({"frame_ms": 2.0}, "frame_ms must be an int >= 1, got 2.0"),
        ({"max_message_size": 0}, "max_message_size must be an int >= 1 or None, got 0"),
        ({"max_retries": -1}, "max_retries must be an int >= 0, got -1"),
        ({"open_timeout": 0}, "open_timeout must be a finite number > 0.0 or None, got 0"),
        ({"close_timeout": math.inf}, "close_timeout must be a finite number >= 0.0, got inf"),
        ({"keepalive": 0}, "keepalive must be a finite number > 0.0, got 0"),
        ({"catch_up_speed": 0.9}, "catch_up_speed must be a finite number >= 1.0, got 0.9"),
    ],
)
def test_session_options_use_the_shared_checks(options: dict[str, object], text: str) -> None:
    assert refused(config, **options) == text


def test_the_pacer_uses_the_shared_checks() -> None:
    assert refused(Pacer, False) == "speed must be a positive number or None, got False"
    text = "catch_up_speed must be a finite number >= 1.0, got nan"
    assert refused(Pacer, 1.0, catch_up=math.nan) == text


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"silence_ms": 0}, "silence_ms must be a positive number, got 0"),
        ({"silence_ms": True}, "silence_ms must be a positive number, got True"),
        ({"min_speech_ms": -1}, "min_speech_ms must be 0 or more, got -1"),
        ({"energy_margin_db": math.inf}, "energy_margin_db must be a finite number, got inf"),
        ({"energy_threshold_db": "-50"}, "energy_threshold_db must be a finite number, got '-50'"),
    ],
)
def test_vad_options_use_the_shared_checks(options: dict[str, object], text: str) -> None:
    assert refused(VadFinalizer, "pcm_s16le", 16000, backend="energy", **options) == text


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", [0, MAX_EXPIRES_IN + 1, True, 60.0])
async def test_access_token_expires_in_uses_the_shared_check(bad: object) -> None:
    # Refused before any I/O: nothing needs to listen on the client's address.
    async with AsyncCartesia(api_key="k", base_url="http://127.0.0.1:9") as client:
        text = f"expires_in must be an integer from 1 to {MAX_EXPIRES_IN} seconds, got {bad!r}"
        with pytest.raises(UsageError, match=re.escape(text)):
            await client.access_token.create(expires_in=bad)  # type: ignore[arg-type]


def test_the_cli_speed_is_the_shared_speed_check_with_zero_unpaced() -> None:
    assert _speed(0.0) is None
    assert _speed(math.inf) is None
    assert _speed(1.5) == 1.5
    for bad in (-1.0, math.nan, -math.inf):
        assert refused(_speed, bad) == f"--speed must be 0 (unpaced) or positive, got {bad}"
