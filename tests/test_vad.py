"""VadFinalizer: where ``finalize`` is due, on synthetic audio and on speech from the twin's voice.

Synthetic "speech" is a 120 Hz sawtooth buzz (a glottal-pulse-like tone both classifiers call
speech); silence is digital zero or faint noise. The real speech is three sentences spoken by
the twin's ``/tts/bytes`` with pauses between them: every finalize must land in a pause.
"""

from __future__ import annotations

import array
import functools
import math
import random
import struct
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cartesia_stt_async as stt
from cartesia_stt_async.cli import main
from cartesia_stt_async.errors import InvalidAudioError, UsageError
from cartesia_stt_async.protocol.audio import ENCODINGS, AudioFormat
from cartesia_stt_async.testing import TwinServer
from cartesia_stt_async.twin import ScriptedEngine
from cartesia_stt_async.vad import VadBackend, VadFinalizer

from .conftest import TwinFactory, client_for, other_tasks, ws
from .speech import convert

BACKENDS: list[VadBackend] = ["energy", "webrtc"]
FRAME_S = 0.03
# How late after speech ends + silence_ms a finalize may come: the frame grid for the energy
# classifier; WebRTC's detector also holds "speech" for ~100 ms after the voice stops.
LATE = {"energy": 2 * FRAME_S, "webrtc": 0.2}


def backend_param(backend: VadBackend) -> VadBackend:
    if backend == "webrtc":
        pytest.importorskip("webrtcvad", reason="the vad extra (webrtcvad-wheels)")
    return backend


def buzz(seconds: float, rate: int = 16000, level: float = 0.3) -> list[int]:
    return [
        int(32767 * level * (((i * 120 / rate) % 1.0) * 2 - 1)) for i in range(int(seconds * rate))
    ]


def quiet(seconds: float, rate: int = 16000, noise: float = 0.0, seed: int = 0) -> list[int]:
    r = random.Random(seed)
    return [int(r.gauss(0, noise * 32767)) if noise else 0 for _ in range(int(seconds * rate))]


def s16(samples: Sequence[int]) -> bytes:
    return array.array("h", samples).tobytes()


def encoded(samples: Sequence[int], encoding: str, rate: int) -> bytes:
    """16 kHz samples as ``encoding`` at ``rate`` (the twin's converter, numpy)."""
    return convert(s16(samples), encoding, rate)


@functools.cache
def two_utterances(encoding: str, rate: int) -> bytes:
    return encoded(TWO_UTTERANCES, encoding, rate)


def feed_all(vad: VadFinalizer, data: bytes, sizes: Iterator[int] | None = None) -> list[int]:
    """Absolute byte offsets of the finalizes, feeding ``data`` in chunks of ``sizes``."""
    found, pos = [], 0
    while pos < len(data):
        size = next(sizes) if sizes is not None else len(data)
        chunk = data[pos : pos + size]
        offsets = vad.feed(chunk)
        assert offsets == sorted(set(offsets))
        assert all(0 < o <= len(chunk) for o in offsets)
        found += [pos + o for o in offsets]
        pos += len(chunk)
    return found


def seconds(offsets: list[int], fmt: AudioFormat) -> list[float]:
    return [round(fmt.duration(o), 3) for o in offsets]


# Recordings start with a moment of room tone before the voice: so do these.
TWO_UTTERANCES = quiet(0.5) + buzz(1.0) + quiet(1.0) + buzz(0.5) + quiet(1.0)
ENDS = (1.5, 3.0)


# -- synthetic audio --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_finalize_after_silence_following_speech(backend: VadBackend) -> None:
    vad = VadFinalizer("pcm_s16le", 16000, silence_ms=600, backend=backend_param(backend))
    assert vad.backend == backend
    found = seconds(feed_all(vad, s16(TWO_UTTERANCES)), vad.format)
    assert len(found) == 2, found
    # Speech ends at 1.5 s and 3.0 s: 600 ms of silence later.
    for end, at in zip(ENDS, found, strict=True):
        assert end + 0.6 <= at <= end + 0.6 + LATE[backend], found
    if backend == "energy":
        # Exactly: the voice stops on a frame boundary; 20 frames of silence end it.
        vad.reset()
        assert feed_all(vad, s16(TWO_UTTERANCES)) == [2 * 33600, 2 * 57600]
    assert not vad.in_speech


@pytest.mark.parametrize("backend", BACKENDS)
def test_silence_ms_moves_the_finalize(backend: VadBackend) -> None:
    for silence_ms in (300, 900):
        vad = VadFinalizer(
            "pcm_s16le", 16000, silence_ms=silence_ms, backend=backend_param(backend)
        )
        first = seconds(feed_all(vad, s16(TWO_UTTERANCES)), vad.format)[0]
        assert ENDS[0] + silence_ms / 1000 <= first <= ENDS[0] + silence_ms / 1000 + LATE[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_speech_or_no_pause_asks_for_nothing(backend: VadBackend) -> None:
    name = backend_param(backend)
    assert feed_all(VadFinalizer("pcm_s16le", 16000, backend=name), s16(quiet(3.0))) == []
    assert feed_all(VadFinalizer("pcm_s16le", 16000, backend=name), s16(buzz(3.0))) == []
    # Speech that ends without enough silence is not finalized yet, and says so.
    vad = VadFinalizer("pcm_s16le", 16000, backend=name)
    assert feed_all(vad, s16(quiet(0.5) + buzz(1.0) + quiet(0.3))) == []
    assert vad.in_speech
    # A long silence asks once, not once per silence_ms.
    vad = VadFinalizer("pcm_s16le", 16000, backend=name)
    assert len(feed_all(vad, s16(quiet(0.5) + buzz(1.0) + quiet(5.0)))) == 1


def test_a_click_does_not_start_an_utterance() -> None:
    vad = VadFinalizer("pcm_s16le", 16000, backend="energy", min_speech_ms=90)
    assert feed_all(vad, s16(quiet(1.0) + buzz(0.03) + quiet(2.0))) == []
    eager = VadFinalizer("pcm_s16le", 16000, backend="energy", min_speech_ms=0)
    assert len(feed_all(eager, s16(quiet(1.0) + buzz(0.03) + quiet(2.0)))) == 1


def test_energy_follows_the_noise_floor() -> None:
    # Steady -40 dBFS noise from the first frame is the floor, not speech; speech over it is.
    audio = quiet(4.0, noise=0.01) + buzz(1.0) + quiet(1.5, noise=0.01, seed=1)
    vad = VadFinalizer("pcm_s16le", 16000, backend="energy")
    found = seconds(feed_all(vad, s16(audio)), vad.format)
    assert len(found) == 1 and 5.6 <= found[0] <= 5.6 + 2 * FRAME_S, found


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_encoding_and_rate_decides_alike(
    encoding: str, rate: int, backend: VadBackend
) -> None:
    vad = VadFinalizer(encoding, rate, backend=backend_param(backend))
    found = seconds(feed_all(vad, encoded(TWO_UTTERANCES, encoding, rate)), vad.format)
    assert len(found) == 2, found
    for end, at in zip(ENDS, found, strict=True):
        assert end + 0.6 <= at <= end + 0.6 + LATE[backend] + FRAME_S, found


@settings(max_examples=30, deadline=None)
@given(
    encoding=st.sampled_from(ENCODINGS),
    rate=st.sampled_from([8000, 11025, 16000]),
    sizes=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=20),
)
def test_chunking_does_not_change_the_decisions(encoding: str, rate: int, sizes: list[int]) -> None:
    data = two_utterances(encoding, rate)
    whole = feed_all(VadFinalizer(encoding, rate, backend="energy"), data)

    def cycle() -> Iterator[int]:
        while True:
            yield from sizes

    assert feed_all(VadFinalizer(encoding, rate, backend="energy"), data, cycle()) == whole
    assert len(whole) == 2


def test_reset_starts_a_new_stream() -> None:
    vad = VadFinalizer("pcm_s16le", 16000, backend="energy")
    first = feed_all(vad, s16(TWO_UTTERANCES))
    vad.feed(b"\x00")  # half a sample, forgotten by reset
    vad.reset()
    assert feed_all(vad, s16(TWO_UTTERANCES)) == first
    assert vad.feed(b"") == []


def split_all(vad: VadFinalizer, data: bytes, size: int) -> list[tuple[bytes, bool]]:
    """Every ``(piece, finalize_after)`` of ``vad.split`` over ``data`` in ``size`` chunks."""
    out: list[tuple[bytes, bool]] = []
    for i in range(0, len(data), size):
        out += [(bytes(piece), after) for piece, after in vad.split(data[i : i + size])]
    return out


# 67200 bytes: a chunk that ends exactly at the first finalize (2 * 33600) leaves no rest.
@pytest.mark.parametrize("size", [3200, 4801, 2 * 33600, 1 << 20])
def test_split_cuts_each_chunk_where_feed_says(size: int) -> None:
    """The one "send up to the offset, then finalize, then the rest" loop (issue 21): pieces
    joined are the stream; a finalize follows exactly the bytes feed names; no empty piece."""
    data = s16(TWO_UTTERANCES)
    pieces = split_all(VadFinalizer("pcm_s16le", 16000, backend="energy"), data, size)
    assert b"".join(piece for piece, _ in pieces) == data
    assert all(piece for piece, _ in pieces)
    ends = [len(piece) for piece, _ in pieces]
    after = [sum(ends[: n + 1]) for n, (_, fin) in enumerate(pieces) if fin]
    assert after == [2 * 33600, 2 * 57600]  # as feed_all finds them (test above)
    # Within one chunk, only the last piece may go without a finalize.
    starts = {i for i in range(0, len(data), size)}
    for n, (_, fin) in enumerate(pieces[:-1]):
        if not fin:
            assert sum(ends[: n + 1]) in starts | {len(data)}


def test_split_keeps_bytes_and_cuts_a_memoryview_in_bytes() -> None:
    data = s16(TWO_UTTERANCES)
    vad = VadFinalizer("pcm_s16le", 16000, backend="energy")
    pieces = vad.split(data)
    assert [(type(p), len(p), fin) for p, fin in pieces] == [
        (bytes, 2 * 33600, True),
        (bytes, 2 * 24000, True),
        (bytes, len(data) - 2 * 57600, False),
    ]
    vad.reset()
    samples = memoryview(array.array("h", TWO_UTTERANCES))  # items of 2 bytes
    viewed = vad.split(samples)
    assert [bytes(p) for p, _ in viewed] == [bytes(p) for p, _ in pieces]
    assert vad.split(b"") == []


def test_split_refuses_what_feed_refuses_and_cuts_nothing() -> None:
    vad = VadFinalizer("pcm_f32le", 16000, backend="energy")
    with pytest.raises(UsageError, match="audio must be bytes-like"):
        vad.split("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidAudioError, match="non-finite sample"):
        vad.split(struct.pack("<2f", 0.0, math.nan))
    assert vad.split(struct.pack("<2f", 0.0, 0.0)) == [(struct.pack("<2f", 0.0, 0.0), False)]


def test_auto_falls_back_to_energy_without_webrtcvad(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "webrtcvad", None)  # as if not installed
    assert VadFinalizer("pcm_s16le", 16000).backend == "energy"
    with pytest.raises(stt.UsageError, match=r"webrtcvad-wheels.*\[vad\]"):
        VadFinalizer("pcm_s16le", 16000, backend="webrtc")


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("pcm_s24le", 16000), {}, "unknown encoding"),
        (("pcm_s16le", 0), {}, "sample_rate"),
        (("pcm_s16le", 4000), {}, "8000 Hz"),
        (("pcm_s16le", 16000), {"frame_ms": 25}, "frame_ms"),
        (("pcm_s16le", 16000), {"silence_ms": 0}, "silence_ms"),
        (("pcm_s16le", 16000), {"silence_ms": math.nan}, "silence_ms"),
        (("pcm_s16le", 16000), {"min_speech_ms": -1}, "min_speech_ms"),
        (("pcm_s16le", 16000), {"aggressiveness": 4}, "aggressiveness"),
        (("pcm_s16le", 16000), {"backend": "silero"}, "backend"),
        (("pcm_s16le", 16000), {"energy_threshold_db": math.inf}, "energy_threshold_db"),
    ],
)
def test_bad_options_are_usage_errors(
    args: tuple[str, int], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(stt.UsageError, match=match):
        VadFinalizer(*args, **kwargs)  # type: ignore[arg-type]


def test_non_bytes_audio_is_a_usage_error() -> None:
    with pytest.raises(stt.UsageError, match="bytes-like"):
        VadFinalizer("pcm_s16le", 16000).feed("hello")  # type: ignore[arg-type]


FLOATS = {"pcm_f32le": "<f4", "pcm_f16le": "<f2"}


def floats(samples: Sequence[int], encoding: str) -> bytes:
    """16-bit samples as float samples of ``encoding`` (full scale 1.0)."""
    code = "f" if encoding == "pcm_f32le" else "e"
    return struct.pack(f"<{len(samples)}{code}", *(v / 32768 for v in samples))


@pytest.mark.parametrize("encoding", sorted(FLOATS))
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("split", [False, True])
def test_a_non_finite_float_sample_is_an_invalid_audio_error(
    encoding: str, bad: float, split: bool
) -> None:
    """Infinity raised a bare OverflowError; NaN passed as silence. Both name the sample and
    its offset now, and the chunk is not taken: the stream goes on as if it never came."""
    width = AudioFormat(encoding, 16000).sample_width
    good = floats(TWO_UTTERANCES, encoding)
    at = 12000 * width  # in the first utterance's buzz
    code = "f" if encoding == "pcm_f32le" else "e"
    broken = good[:at] + struct.pack(f"<{code}", bad) + good[at + width :]
    vad = VadFinalizer(encoding, 16000, backend="energy")
    head = 10000 * width
    assert vad.feed(good[:head]) == []
    # With split, the bad sample's first byte comes in one chunk and the rest in the next.
    cut = at + 1 if split else at + 3200 * width
    if split:
        assert vad.feed(broken[head:cut]) == []
    with pytest.raises(InvalidAudioError) as info:
        vad.feed(broken[cut if split else head : at + 3200 * width])
    value = "nan" if bad != bad else str(bad)
    assert str(info.value) == (
        f"{encoding} audio holds a non-finite sample ({value}) at byte {at} of the stream: "
        "float samples must be finite numbers (full scale is -1 to 1); this chunk was not taken"
    )
    # The refused chunk left no trace: the good audio from there gives the same finalizes.
    resume = cut if split else head
    assert feed_all(vad, good[resume:]) == [
        o - resume for o in feed_all(VadFinalizer(encoding, 16000, backend="energy"), good)
    ]


def test_transcribe_vad_on_a_file_with_infinity_is_one_line(
    cartesia_twin: TwinServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``cartesia-stt transcribe FILE.wav --vad`` printed a traceback for float audio holding
    an infinity; it prints one line and exits with 2 (bad input) now."""
    monkeypatch.setenv("CARTESIA_API_KEY", "cli-test-key")
    monkeypatch.setenv("CARTESIA_BASE_URL", cartesia_twin.base_url)
    samples = floats(TWO_UTTERANCES, "pcm_f32le")
    samples = samples[:40000] + struct.pack("<f", math.inf) + samples[40004:]
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(samples),
        b"WAVE",
        b"fmt ",
        16,
        3,
        1,
        16000,
        64000,
        4,
        32,
        b"data",
        len(samples),
    )
    path = tmp_path / "inf.wav"
    path.write_bytes(header + samples)
    code = main(["transcribe", str(path), "--speed", "0", "--vad", "--vad-backend", "energy"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("cartesia-stt")]
    assert line == (
        "cartesia-stt transcribe: pcm_f32le audio holds a non-finite sample (inf) at byte "
        "40000 of the stream: float samples must be finite numbers (full scale is -1 to 1); "
        "this chunk was not taken"
    )
    assert err.splitlines()[-1] == line


# -- real speech from the twin's voice --------------------------------------------------------

SENTENCES = (
    "The quick brown fox jumps over the lazy dog",
    "Sandy sells seashells on the sea shore",
    "Please call me back tomorrow afternoon",
)
PAUSE_S = 0.8


def speech_span(samples: array.array[int], threshold: int = 200) -> tuple[int, int]:
    """First and last sample (exclusive) above ``threshold``: where the voice is audible."""
    loud = [i for i, v in enumerate(samples) if abs(v) > threshold]
    return loud[0], loud[-1] + 1


@pytest.fixture(scope="module")
def spoken() -> tuple[bytes, list[tuple[float, float]]]:
    """The sentences from the twin's ``/tts/bytes``, with pauses and faint noise, and where
    the voice is audible in it (seconds)."""
    pytest.importorskip("py_nanotts")
    import asyncio

    from cartesia_stt_async.twin import ScriptedEngine, serve

    async def synthesize() -> list[bytes]:
        async with serve(engine=ScriptedEngine([])) as twin, client_for(twin) as client:
            out = []
            for text in SENTENCES:
                response = await client.tts.generate(
                    model_id="sonic-latest",
                    transcript=text,
                    voice="any",
                    output_format={
                        "container": "raw",
                        "encoding": "pcm_s16le",
                        "sample_rate": 16000,
                    },
                    language="en",
                )
                out.append(await response.read())
            return out

    clips = asyncio.run(synthesize())
    audio: array.array[int] = array.array("h")
    spans = []
    for clip in clips:
        samples = array.array("h", clip)
        start, end = speech_span(samples)
        spans.append(((len(audio) + start) / 16000, (len(audio) + end) / 16000))
        audio.extend(samples)
        audio.extend([0] * int(PAUSE_S * 16000))
    noise = quiet(len(audio) / 16000, noise=0.001)  # -60 dBFS
    mixed = [max(-32768, min(32767, a + n)) for a, n in zip(audio, noise, strict=True)]
    return s16(mixed), spans


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("encoding", "rate"), [("pcm_s16le", 16000), ("pcm_mulaw", 8000), ("pcm_f32le", 44100)]
)
def test_finalizes_land_in_the_pauses_of_real_speech(
    spoken: tuple[bytes, list[tuple[float, float]]], backend: VadBackend, encoding: str, rate: int
) -> None:
    audio, spans = spoken
    data = audio if encoding == "pcm_s16le" else convert(audio, encoding, rate)
    vad = VadFinalizer(encoding, rate, backend=backend_param(backend))
    chunk = vad.format.frame_bytes(100)  # 100 ms chunks, as a live stream sends them
    found = seconds(feed_all(vad, data, iter(lambda: chunk, None)), vad.format)
    total = vad.format.duration(len(data))
    pauses = [
        (end, nxt) for (_, end), (nxt, _) in zip(spans, [*spans[1:], (total, total)], strict=True)
    ]
    assert len(found) == len(SENTENCES), (found, pauses)
    for at, (end, nxt) in zip(found, pauses, strict=True):
        assert end + 0.5 <= at <= nxt, (found, pauses)  # in the pause, after most of silence_ms


@pytest.mark.asyncio
async def test_stream_finalizes_where_the_vad_says(twin_factory: TwinFactory) -> None:
    """``conn.stream(..., vad=...)`` sends ``finalize`` at each VAD offset, in order with the
    audio: the twin hears exactly the audio up to each offset before each finalize."""
    fmt = AudioFormat("pcm_s16le", 16000)
    data = two_utterances(fmt.encoding, fmt.sample_rate)
    offsets = feed_all(VadFinalizer(fmt.encoding, fmt.sample_rate, backend="energy"), data)
    assert len(offsets) == 2
    engine = ScriptedEngine([["one."], [" two."]])
    async with twin_factory(engine=engine) as twin:
        async with ws(client_for(twin)) as conn:
            chunks = [data[i : i + 3200] for i in range(0, len(data), 3200)]
            vad = VadFinalizer(fmt.encoding, fmt.sample_rate, backend="energy")
            transcript = await conn.stream([chunks], vad=vad, finalize_each=False)
        assert transcript.text == "one. two."
        assert [t for _, t in twin.sessions[0].commands] == ["finalize", "finalize", "close"]
        first, second = engine.utterance_bytes[0]  # the audio before each finalize
        assert [first, first + second] == offsets
        assert twin.sessions[0].audio_bytes == len(data)
    assert not other_tasks()


@pytest.mark.asyncio
async def test_stream_refuses_a_vad_of_the_wrong_type(twin_factory: TwinFactory) -> None:
    async with twin_factory(engine=ScriptedEngine([])) as twin, ws(client_for(twin)) as conn:
        with pytest.raises(UsageError, match="vad must be a VadFinalizer"):
            await conn.stream([b""], vad="webrtc")  # type: ignore[arg-type]
    assert not other_tasks()
