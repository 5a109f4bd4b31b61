"""The one boundary for foreign exceptions (``_translate``): what our errors may carry."""

from __future__ import annotations

import pytest

import cartesia_stt_async as stt
from cartesia_stt_async._redact import Secrets
from cartesia_stt_async._translate import io_error
from cartesia_stt_async.twin import ScriptedEngine

from .conftest import TwinFactory, client_for, ws

KEY = "sk_canary_io_0f1e2d3c"


class _Leaky(Exception):
    """An exception whose repr shows what its text does not (as many foreign ones do)."""

    def __init__(self, url: str) -> None:
        super().__init__("write failed")
        self.url = url

    def __repr__(self) -> str:
        return f"_Leaky(url={self.url!r})"


def test_io_error_keeps_the_type_and_redacted_text_never_the_repr() -> None:
    secrets = Secrets(KEY)
    error = io_error("sending", _Leaky(f"wss://host/stt?api_key={KEY}"), secrets)
    assert isinstance(error, stt.APIConnectionError)
    assert str(error) == "sending failed: _Leaky: write failed"
    echoed = io_error("receiving", OSError(f"peer said {KEY}"), secrets)
    assert KEY not in str(echoed) and "receiving failed: OSError: peer said" in str(echoed)
    assert error.__cause__ is None and error.__context__ is None


@pytest.mark.asyncio
async def test_a_wav_path_that_cannot_be_opened_keeps_no_foreign_exception(
    twin_factory: TwinFactory,
) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin, ws(client_for(twin)) as conn:
        with pytest.raises(stt.UsageError, match="cannot open audio file") as info:
            await conn.stream(["/nonexistent/turn.wav"])
    assert info.value.__cause__ is None and info.value.__context__ is None
