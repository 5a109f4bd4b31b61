"""The one retry policy (protocol/retry.py, pure) and its use against the twin's fault plan.

Hostile HTTP servers written here in the test are in tests/hostile/test_http_retry.py.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import os
from pathlib import Path
from typing import Any

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async.protocol.retry import (
    MAX_RETRY_AFTER,
    RetryPolicy,
    parse_retry_after,
    retryable_status,
    transient,
)
from cartesia_stt_async.twin import Faults, ScriptedEngine, serve
from cartesia_stt_async.twin._stt_route import batch_state
from cartesia_stt_async.twin.faults import HTTPFault

from .conftest import SLACK, client_for, other_tasks, pcm
from .test_batch import TEXT, wav

NOW = 1_800_000_000.0
POLICY = RetryPolicy()


def decide(attempt: int = 1, status: int | None = 503, **kw: Any) -> float | None:
    args: dict[str, Any] = {"headers": {}, "remaining": None, "jitter": 0.0, "now": NOW}
    args.update(kw)
    return POLICY.decide(attempt, status=status, **args)


# -- pure: which failures, how long, how many ------------------------------------------------


@pytest.mark.parametrize("status", [None, 429, 500, 502, 503, 504, 529])
def test_connection_failures_429_and_5xx_are_retried(status: int | None) -> None:
    assert retryable_status(status, {})
    assert decide(status=status) == 0.375  # 0.5 s, jittered down by up to a quarter


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 413, 422])
def test_other_4xx_are_never_retried(status: int) -> None:
    assert not retryable_status(status, {})
    assert decide(status=status) is None


def test_x_should_retry_wins() -> None:
    assert decide(status=409, headers={"x-should-retry": "true"}) == 0.375
    assert decide(status=503, headers={"x-should-retry": "false"}) is None
    assert decide(status=None, headers={"x-should-retry": "false"}) is None


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy(max_retries=10, initial_delay=0.5, max_delay=8.0)
    waits = [
        policy.decide(n, status=503, headers={}, remaining=None, jitter=0.0, now=NOW)
        for n in range(1, 8)
    ]
    assert waits == [0.375, 0.75, 1.5, 3.0, 6.0, 6.0, 6.0]
    top = policy.decide(1, status=503, headers={}, remaining=None, jitter=0.999, now=NOW)
    assert top is not None and 0.499 < top < 0.5


def test_max_retries_counts_retries_after_the_first_attempt() -> None:
    assert decide(attempt=2) is not None
    assert decide(attempt=3) is None
    zero = RetryPolicy(max_retries=0)
    assert zero.decide(1, status=503, headers={}, remaining=None, jitter=0.0, now=NOW) is None


def test_the_servers_wait_is_honoured() -> None:
    assert decide(headers={"retry-after-ms": "250"}) == 0.25
    assert decide(headers={"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert decide(headers={"retry-after": "2"}) == 2.0
    date = email.utils.formatdate(NOW + 5, usegmt=True)
    assert decide(headers={"retry-after": date}) == 5.0
    # Out of bounds or malformed: the backoff instead.
    for bad in ("0", "-1", "nan", "inf", "soon", str(MAX_RETRY_AFTER + 1)):
        assert decide(headers={"retry-after": bad}) == 0.375, bad
    assert decide(headers={"retry-after-ms": "x"}) == 0.375


def test_parse_retry_after() -> None:
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("1.5", NOW) == 1.5
    assert parse_retry_after(email.utils.formatdate(NOW - 5, usegmt=True), NOW) == 0.0
    assert parse_retry_after("Mon, 07 Dec 2026 20:00:00", NOW) is None  # no zone


def test_no_retry_past_the_deadline_or_of_a_body_that_cannot_be_replayed() -> None:
    assert decide(remaining=0.3) is None  # 0.375 s wait would end after the deadline
    assert decide(remaining=0.5) == 0.375
    assert decide(headers={"retry-after": "2"}, remaining=1.0) is None
    assert decide(replayable=False) is None


def test_transient_errors() -> None:
    assert transient(stt.APIConnectionError("x"))
    assert transient(stt.ServerError("x", status_code=503))
    assert not transient(stt.ProxyError("x", status_code=502))
    assert not transient(stt.ProxyError("x"))  # unreachable
    assert not transient(stt.TLSError("x"))
    assert not transient(stt.ProtocolError("x"))


@pytest.mark.parametrize("bad", [-1, True, 1.5, "2", None])
def test_the_option_is_checked(bad: object) -> None:
    with pytest.raises(stt.UsageError, match="max_retries"):
        stt.AsyncCartesia(api_key="k", max_retries=bad)  # type: ignore[arg-type]
    with pytest.raises(stt.UsageError, match="initial_delay"):
        RetryPolicy(initial_delay=-1)
    with pytest.raises(stt.UsageError, match="max_delay"):
        RetryPolicy(max_delay=float("nan"))


# -- against the twin's fault plan ---------------------------------------------------------

FAST = RetryPolicy(max_retries=2, initial_delay=0.01, max_delay=0.05)


async def transcribe(base_url: str, policy: RetryPolicy = FAST, **kw: Any) -> stt.Transcription:
    args: dict[str, Any] = {"file": wav(pcm(0.5)), "model": "ink-whisper"}
    args.update(kw)
    async with stt.AsyncCartesia(api_key="k", base_url=base_url, max_retries=policy) as client:
        return await client.stt.transcribe(**args)


def plan(*faults: HTTPFault) -> Faults:
    return Faults(http=list(faults))


@pytest.mark.asyncio
async def test_429_with_retry_after_is_waited_for_then_retried() -> None:
    faults = plan(HTTPFault("status", request=0, status=429, retry_after="0.3"))
    async with serve(engine=ScriptedEngine([[TEXT]]), faults=faults) as twin:
        loop = asyncio.get_running_loop()
        start = loop.time()
        result = await transcribe(twin.base_url)
        elapsed = loop.time() - start
        statuses = [r.status for r in batch_state(twin).requests]
    assert result.text == TEXT
    assert statuses == [429, 200]
    assert 0.3 <= elapsed < 0.3 + 2 * SLACK  # the server's wait, not the 10 ms backoff
    assert not other_tasks()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retried_until_the_budget_runs_out(status: int) -> None:
    faults = plan(HTTPFault("status", status=status))  # every request
    async with serve(engine=ScriptedEngine([]), faults=faults) as twin:
        with pytest.raises(stt.ServerError) as info:
            await transcribe(twin.base_url)
        requests = batch_state(twin).requests
    assert len(requests) == 3  # the first attempt and max_retries=2
    assert info.value.status_code == status
    assert info.value.request_id == requests[-1].request_id  # the last answer's


@pytest.mark.asyncio
async def test_a_dropped_connection_is_retried() -> None:
    faults = plan(HTTPFault("drop", request=0), HTTPFault("drop", request=1))
    async with serve(engine=ScriptedEngine([[TEXT]]), faults=faults) as twin:
        result = await transcribe(twin.base_url)
        assert [r.status for r in batch_state(twin).requests] == [None, None, 200]
    assert result.text == TEXT
    async with serve(engine=ScriptedEngine([]), faults=plan(HTTPFault("drop"))) as twin:
        with pytest.raises(stt.APIConnectionError):
            await transcribe(twin.base_url)
        assert len(batch_state(twin).requests) == 3


@pytest.mark.asyncio
async def test_x_should_retry_false_and_other_4xx_are_not_retried() -> None:
    faults = plan(
        HTTPFault("status", request=0, status=503, headers={"x-should-retry": "false"}),
        HTTPFault("status", request=1, status=409),
    )
    async with serve(engine=ScriptedEngine([]), faults=faults) as twin:
        with pytest.raises(stt.ServerError):
            await transcribe(twin.base_url)
        with pytest.raises(stt.APIStatusError) as info:
            await transcribe(twin.base_url)
        assert info.value.status_code == 409
        assert len(batch_state(twin).requests) == 2


@pytest.mark.asyncio
async def test_a_slow_answer_fails_at_the_calls_deadline_retries_included() -> None:
    faults = plan(HTTPFault("delay", delay=5.0))
    async with serve(engine=ScriptedEngine([]), faults=faults) as twin:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(stt.APITimeoutError):
            await transcribe(twin.base_url, timeout=0.5)
        elapsed = loop.time() - start
    assert 0.5 <= elapsed < 0.5 + SLACK  # one deadline for every attempt, not 0.5 s each


@pytest.mark.asyncio
async def test_a_seekable_file_object_is_sent_whole_again(tmp_path: Path) -> None:
    audio = wav(pcm(1.0))
    buffer = io.BytesIO(b"junk" + audio)
    buffer.seek(4)  # read from where the caller left it
    faults = plan(HTTPFault("status", request=0, status=503))
    async with serve(engine=ScriptedEngine([[TEXT]]), faults=faults) as twin:
        result = await transcribe(twin.base_url, file=buffer)
        sizes = [(r.status, r.size) for r in batch_state(twin).requests]
    assert result.text == TEXT
    assert sizes == [(503, 0), (200, len(audio))]  # the 503 came before the body was read


@pytest.mark.asyncio
async def test_a_partly_sent_non_seekable_stream_is_not_retried() -> None:
    read, write = os.pipe()
    os.write(write, wav(pcm(0.5)))
    os.close(write)
    faults = plan(HTTPFault("status", request=0, status=503))
    with os.fdopen(read, "rb", buffering=0) as pipe:
        async with serve(engine=ScriptedEngine([[TEXT]]), faults=faults) as twin:
            with pytest.raises(stt.ServerError):
                await transcribe(twin.base_url, file=pipe)
            assert len(batch_state(twin).requests) == 1


@pytest.mark.asyncio
async def test_the_first_handshake_is_retried_like_http_calls() -> None:
    refused = Faults(refuse={0: 503, 1: 500})
    async with serve(engine=ScriptedEngine([["Hi."]]), faults=refused) as twin:
        client = client_for(twin, max_retries=FAST)
        async with client.stt.manual_finalize.websocket(
            model="ink-2", encoding="pcm_s16le", sample_rate=16000
        ) as conn:
            await conn.send_audio(pcm(0.2))
            assert (await conn.finalize(timeout=5 * SLACK)).text == "Hi."
        assert twin.handshakes == 3
        assert conn.stats.reconnects == 0  # not a reconnect: the session's first socket
    for status, error in [(401, stt.AuthenticationError), (403, stt.PermissionDeniedError)]:
        async with serve(engine=ScriptedEngine([]), faults=Faults(refuse={0: status})) as twin:
            client = client_for(twin, max_retries=FAST)
            with pytest.raises(error):
                async with client.stt.manual_finalize.websocket(
                    model="ink-2", encoding="pcm_s16le", sample_rate=16000
                ):
                    pass
            assert twin.handshakes == 1
    assert not other_tasks()
