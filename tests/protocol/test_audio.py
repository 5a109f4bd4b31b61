"""Audio formats, exact reframing and WAV headers (protocol.md §1.3, §3): exact bytes."""

from __future__ import annotations

import dataclasses
import gc
import io
import random
import struct
import wave
from array import array

import pytest

from cartesia_stt_async.errors import InvalidAudioError, UsageError
from cartesia_stt_async.protocol.audio import (
    BYTES_PER_SAMPLE,
    ENCODINGS,
    AudioFormat,
    Reframer,
    Span,
    WavInfo,
    as_bytes_view,
    parse_wav_header,
)

# -- encodings and sizes -------------------------------------------------------------------------


def test_the_six_encodings_in_wire_order() -> None:
    assert ENCODINGS == (
        "pcm_s16le",
        "pcm_s32le",
        "pcm_f16le",
        "pcm_f32le",
        "pcm_mulaw",
        "pcm_alaw",
    )
    assert set(BYTES_PER_SAMPLE) == set(ENCODINGS)


@pytest.mark.parametrize(
    ("encoding", "width"),
    [
        ("pcm_s16le", 2),
        ("pcm_s32le", 4),
        ("pcm_f16le", 2),
        ("pcm_f32le", 4),
        ("pcm_mulaw", 1),
        ("pcm_alaw", 1),
    ],
)
def test_bytes_per_sample(encoding: str, width: int) -> None:
    fmt = AudioFormat(encoding, 16000)
    assert fmt.sample_width == width
    assert BYTES_PER_SAMPLE[encoding] == width
    assert fmt.bytes_per_second == 16000 * width


@pytest.mark.parametrize(
    ("encoding", "rate", "frame"),
    [
        ("pcm_s16le", 16000, 3200),
        ("pcm_s16le", 8000, 1600),
        ("pcm_s16le", 22050, 4410),
        ("pcm_s16le", 48000, 9600),
        ("pcm_s32le", 16000, 6400),
        ("pcm_s32le", 48000, 19200),
        ("pcm_f16le", 24000, 4800),
        ("pcm_f16le", 16000, 3200),
        ("pcm_f32le", 44100, 17640),
        ("pcm_f32le", 16000, 6400),
        ("pcm_mulaw", 8000, 800),
        ("pcm_mulaw", 16000, 1600),
        ("pcm_alaw", 8000, 800),
        ("pcm_alaw", 44100, 4410),
    ],
)
def test_bytes_per_100ms_frame(encoding: str, rate: int, frame: int) -> None:
    fmt = AudioFormat(encoding, rate)
    assert fmt.frame_bytes() == frame
    assert fmt.frame_bytes(100) == frame
    assert fmt.duration(frame) == pytest.approx(0.1, abs=1e-12)


@pytest.mark.parametrize(
    ("encoding", "rate", "frame_ms", "frame"),
    [
        ("pcm_s16le", 16000, 20, 640),
        ("pcm_s16le", 16000, 1000, 32000),
        ("pcm_mulaw", 8000, 20, 160),
        ("pcm_f32le", 48000, 10, 1920),
        # 11025 Hz * 100 ms = 1102.5 samples: rounded down to whole samples.
        ("pcm_mulaw", 11025, 100, 1102),
        ("pcm_s16le", 11025, 100, 2204),
        ("pcm_s32le", 11025, 100, 4408),
        # Never less than one sample.
        ("pcm_s32le", 1, 100, 4),
        ("pcm_alaw", 5, 1, 1),
    ],
)
def test_frame_bytes_for_other_lengths(encoding: str, rate: int, frame_ms: int, frame: int) -> None:
    assert AudioFormat(encoding, rate).frame_bytes(frame_ms) == frame


@pytest.mark.parametrize("frame_ms", [0, -1, -100])
def test_frame_bytes_rejects_non_positive_lengths(frame_ms: int) -> None:
    with pytest.raises(UsageError, match="frame_ms"):
        AudioFormat("pcm_s16le", 16000).frame_bytes(frame_ms)


@pytest.mark.parametrize(
    ("encoding", "rate", "nbytes", "seconds"),
    [
        ("pcm_s16le", 16000, 32000, 1.0),
        ("pcm_s16le", 16000, 8000, 0.25),
        ("pcm_s32le", 16000, 16000, 0.25),
        ("pcm_mulaw", 8000, 4000, 0.5),
        ("pcm_f32le", 8000, 0, 0.0),
    ],
)
def test_duration(encoding: str, rate: int, nbytes: int, seconds: float) -> None:
    assert AudioFormat(encoding, rate).duration(nbytes) == seconds


def test_audio_format_is_frozen() -> None:
    fmt = AudioFormat("pcm_s16le", 16000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.sample_rate = 8000  # type: ignore[misc]


@pytest.mark.parametrize(
    "encoding", ["mp3", "PCM_S16LE", "pcm_s24le", "pcm_u8", "", "linear16", " pcm_s16le", None, 16]
)
def test_unknown_encodings_are_usage_errors(encoding: object) -> None:
    with pytest.raises(UsageError, match="unknown encoding") as info:
        AudioFormat(encoding, 16000)  # type: ignore[arg-type]
    assert "pcm_s16le, pcm_s32le, pcm_f16le, pcm_f32le, pcm_mulaw, pcm_alaw" in str(info.value)


@pytest.mark.parametrize("encoding", [["pcm_s16le"], {"encoding": "pcm_s16le"}])
def test_unhashable_encodings_are_usage_errors(encoding: object) -> None:
    with pytest.raises(UsageError, match="unknown encoding"):
        AudioFormat(encoding, 16000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "rate", [0, -1, -16000, True, False, 16000.0, 0.5, "16000", None, b"16000"]
)
def test_bad_sample_rates_are_usage_errors(rate: object) -> None:
    with pytest.raises(UsageError, match="sample_rate must be a positive integer"):
        AudioFormat("pcm_s16le", rate)  # type: ignore[arg-type]


def test_check_aligned() -> None:
    fmt = AudioFormat("pcm_s32le", 16000)
    fmt.check_aligned(0)
    fmt.check_aligned(8)
    with pytest.raises(InvalidAudioError, match="audio of 6 bytes is not a whole number"):
        fmt.check_aligned(6)
    with pytest.raises(InvalidAudioError, match=r"^chunk of 3 bytes"):
        fmt.check_aligned(3, what="chunk")
    AudioFormat("pcm_mulaw", 8000).check_aligned(7)


# -- Reframer ------------------------------------------------------------------------------------


def _chunks(rng: random.Random, data: bytes, frame_bytes: int) -> list[bytes]:
    """Cut ``data`` at random places, with empty and frame-sized chunks mixed in."""
    sizes = [0, 1, 2, 3, 5, 7, frame_bytes - 1, frame_bytes, frame_bytes + 1, 2 * frame_bytes]
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        n = rng.choice(sizes) if rng.random() < 0.5 else rng.randrange(0, 3 * frame_bytes)
        out.append(data[pos : pos + n])
        pos += n
    return out


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize(
    ("frame_bytes", "width"), [(3200, 2), (800, 1), (6400, 4), (4, 2), (1, 1), (12, 4)]
)
def test_reframer_reproduces_the_stream_in_exact_frames(
    seed: int, frame_bytes: int, width: int
) -> None:
    rng = random.Random(seed * 1000 + frame_bytes)
    samples = rng.randrange(0, 5 * frame_bytes // width + 3)
    data = rng.randbytes(samples * width)
    reframer = Reframer(frame_bytes, width)
    frames: list[bytes | Span] = []
    pushed = 0
    for i, chunk in enumerate(_chunks(rng, data, frame_bytes)):
        kind = i % 4
        piece: bytes | bytearray | memoryview = (
            chunk
            if kind == 0
            else bytearray(chunk)
            if kind == 1
            else memoryview(chunk)
            if kind == 2
            else memoryview(bytearray(chunk))
        )
        got = reframer.push(piece)
        pushed += len(chunk)
        # Immutable: bytes, or a span of the caller's bytes; never a view of a mutable buffer.
        assert all(len(f) == frame_bytes for f in got)
        assert all(type(f) is bytes or (type(f) is Span and f.data is piece) for f in got)
        if isinstance(piece, bytearray):
            piece[:] = bytes(len(piece))  # the caller reuses its buffer: no frame may change
        elif isinstance(piece, memoryview) and isinstance(piece.obj, bytearray):
            piece.obj[:] = bytes(len(piece.obj))
        frames += got
        assert reframer.pending == pushed - len(frames) * frame_bytes
        assert 0 <= reframer.pending < frame_bytes
    last = reframer.flush()
    assert len(last) == len(data) % frame_bytes
    assert len(last) % width == 0
    assert b"".join(map(bytes, frames)) + last == data
    assert len(frames) == len(data) // frame_bytes
    assert reframer.pending == 0
    assert reframer.flush() == b""


def test_reframer_cuts_bytes_into_spans_without_copying() -> None:
    data = bytes(range(256)) * 100  # 8 frames of 3200 bytes
    reframer = Reframer(3200, 2)
    head = data[:-100]
    frames = reframer.push(head)
    assert [(type(f), f.data is head) for f in frames if type(f) is Span] == [(Span, True)] * 7
    assert not gc.is_tracked(frames[0])  # thousands of them live in queues and journals
    last = reframer.push(memoryview(data)[-100:])  # completes frame 8: a copy
    assert [type(f) for f in last] == [bytes]
    whole = Reframer(3200, 2).push(data)
    assert all(type(f) is Span and f.data is data for f in whole)
    assert b"".join(map(bytes, whole)) == data
    second = whole[1]
    assert type(second) is Span
    assert bytes(second.view()) == data[3200:6400] == second
    part = Reframer(3200, 2).push(data, 100, 6500)  # a range of the chunk, by position
    assert [(f.start, f.stop) for f in part if type(f) is Span] == [(100, 3300), (3300, 6500)]


def test_reframer_splits_samples_across_pushes() -> None:
    reframer = Reframer(4, 2)
    assert reframer.push(b"\x01") == []
    assert reframer.push(b"\x02\x03") == []
    assert reframer.pending == 3
    assert reframer.push(b"\x04\x05") == [b"\x01\x02\x03\x04"]
    assert reframer.pending == 1
    assert reframer.push(b"\x06\x07\x08\x09\x0a") == [b"\x05\x06\x07\x08"]
    assert reframer.pending == 2
    assert reframer.push(b"\x0b") == []
    assert reframer.push(b"\x0c") == [b"\x09\x0a\x0b\x0c"]
    assert reframer.push(b"\x0d") == []
    assert reframer.push(b"\x0e") == []
    assert reframer.flush() == b"\x0d\x0e"


def test_reframer_fast_path_copies_aligned_chunks() -> None:
    reframer = Reframer(4, 2)
    source = bytearray(b"abcdefgh")
    frames = reframer.push(source)
    assert frames == [b"abcd", b"efgh"]
    assert all(type(f) is bytes for f in frames)
    source[:] = b"XXXXXXXX"  # the caller may reuse its buffer
    assert frames == [b"abcd", b"efgh"]
    assert reframer.push(memoryview(b"ijkl")) == [b"ijkl"]
    assert reframer.push(b"") == []
    assert reframer.pending == 0


def test_reframer_slow_path_does_not_alias_the_callers_buffer() -> None:
    reframer = Reframer(4, 2)
    source = bytearray(b"ab")
    assert reframer.push(source) == []
    source[:] = b"ZZ"
    assert reframer.push(b"cd") == [b"abcd"]


@pytest.mark.parametrize(
    ("width", "held", "stray"), [(2, 1, 1), (2, 101, 1), (4, 5, 1), (4, 6, 2), (4, 4003, 3)]
)
def test_reframer_flush_of_a_misaligned_remainder(width: int, held: int, stray: int) -> None:
    reframer = Reframer(6400, width)
    assert reframer.push(b"\x00" * held) == []
    with pytest.raises(InvalidAudioError, match=rf"audio ends with {stray} stray byte\(s\)"):
        reframer.flush()
    # The remainder is dropped so that the stream stays aligned from here on.
    assert reframer.pending == 0
    assert reframer.push(b"\x01" * width) == []
    assert reframer.flush() == b"\x01" * width


def test_reframer_mid_sample_frames_are_fine_until_flush() -> None:
    # A frame boundary never falls inside a sample, since frame_bytes is a whole number of them.
    reframer = Reframer(8, 4)
    assert reframer.push(b"\x00" * 9) == [b"\x00" * 8]
    assert reframer.pending == 1
    with pytest.raises(InvalidAudioError):
        reframer.flush()


@pytest.mark.parametrize(("size", "width"), [(0, 1), (0, 2), (-4, 2), (3, 2), (6, 4), (2, 4)])
def test_reframer_bad_sizes(size: int, width: int) -> None:
    with pytest.raises(UsageError, match=f"frame_bytes {size} must be a positive multiple"):
        Reframer(size, width)


def test_reframer_defaults_to_one_byte_samples() -> None:
    reframer = Reframer(3)
    assert reframer.sample_width == 1
    assert reframer.push(b"abcde") == [b"abc"]
    assert reframer.flush() == b"de"


def test_reframer_counts_bytes_of_a_typed_memoryview() -> None:
    samples = array("h", range(3200))  # 6400 bytes, exactly two 100 ms frames at 16 kHz
    reframer = Reframer(3200, 2)
    frames = reframer.push(memoryview(samples))
    assert [len(f) for f in frames] == [3200, 3200]
    assert b"".join(map(bytes, frames)) == samples.tobytes()


def test_reframer_takes_an_unaligned_typed_memoryview_by_its_bytes() -> None:
    # Through the buffering path the bytes are counted correctly (contrast with the bug above).
    samples = array("h", range(2000))  # 4000 bytes
    reframer = Reframer(3200, 2)
    assert reframer.push(memoryview(samples)) == [samples.tobytes()[:3200]]
    assert reframer.flush() == samples.tobytes()[3200:]


def strided_views() -> list[memoryview]:
    """Non-contiguous views: a byte slice with a step, typed ones."""
    data = bytes(range(256)) * 4
    return [
        memoryview(data)[::2],
        memoryview(array("h", range(400)))[::2],
        memoryview(array("i", range(400)))[1::3],
    ]


@pytest.mark.parametrize("view", strided_views(), ids=["bytes", "int16", "int32"])
def test_a_non_contiguous_view_is_its_bytes_in_order(view: memoryview) -> None:
    # One rule for send_audio, send_raw, stream and VadFinalizer.feed: a strided view is
    # copied, its bytes those of view.tobytes(); the reframer cuts the same bytes.
    assert not view.c_contiguous
    assert as_bytes_view(view) == view.tobytes()
    reframer = Reframer(100, view.itemsize)
    frames = reframer.push(view)
    assert b"".join(map(bytes, frames)) + reframer.flush() == view.tobytes()


def test_contiguous_views_are_not_copied() -> None:
    data = bytearray(range(100))
    assert as_bytes_view(data) is data
    flat = memoryview(data)
    assert as_bytes_view(flat) is flat
    typed = as_bytes_view(memoryview(array("h", range(50))))
    assert isinstance(typed, memoryview) and typed.format == "B" and len(typed) == 100


def test_a_released_view_is_an_invalid_audio_error() -> None:
    view = memoryview(b"abcd")
    view.release()
    with pytest.raises(InvalidAudioError, match="memoryview has been released"):
        as_bytes_view(view)


# -- WAV headers ---------------------------------------------------------------------------------


def std_wav(channels: int = 1, width: int = 2, rate: int = 16000, frames: int = 10) -> bytes:
    """A WAV written by the standard library ``wave`` module."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01" * frames * channels * width)
    return buf.getvalue()


def chunk(cid: bytes, body: bytes) -> bytes:
    """One RIFF chunk, with the pad byte an odd-sized body needs."""
    return cid + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def fmt_body(
    tag: int, bits: int, rate: int = 8000, channels: int = 1, extensible: bool = False
) -> bytes:
    block = channels * bits // 8
    body = struct.pack(
        "<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits
    )
    if extensible:
        # cbSize 22, valid bits, channel mask, then the sub-format GUID (starting with the tag).
        body += struct.pack("<HHI", 22, bits, 4) + struct.pack("<H", tag) + GUID_TAIL
    return body


def hand_wav(
    tag: int,
    bits: int,
    rate: int = 8000,
    channels: int = 1,
    *,
    extensible: bool = False,
    before_fmt: bytes = b"",
    before_data: bytes = b"",
    data: bytes = b"\x00\x00\x00\x00",
    magic: bytes = b"RIFF",
) -> bytes:
    """A WAV built by hand with ``struct``."""
    body = b"WAVE" + before_fmt
    body += chunk(b"fmt ", fmt_body(tag, bits, rate, channels, extensible)) + before_data
    body += b"data" + struct.pack("<I", len(data)) + data
    return magic + struct.pack("<I", len(body)) + body


def test_standard_library_16_bit_pcm() -> None:
    raw = std_wav(frames=10)
    info = parse_wav_header(raw)
    assert info == WavInfo(
        encoding="pcm_s16le",
        sample_rate=16000,
        channels=1,
        bits_per_sample=16,
        format_tag=1,
        data_offset=44,
        data_size=20,
    )
    assert raw[info.data_offset :] == b"\x01" * 20
    info.check_matches(AudioFormat("pcm_s16le", 16000))


def test_standard_library_stereo_44k() -> None:
    info = parse_wav_header(std_wav(channels=2, rate=44100, frames=3))
    assert (info.encoding, info.channels, info.sample_rate, info.data_size) == (
        "pcm_s16le",
        2,
        44100,
        12,
    )
    with pytest.raises(InvalidAudioError) as exc:
        info.check_matches(AudioFormat("pcm_s16le", 44100))
    assert str(exc.value) == (
        "WAV file has 2 channels but the protocol takes mono. "
        + convert_hint(AudioFormat("pcm_s16le", 44100))
    )


def test_only_the_head_of_a_long_file_is_needed() -> None:
    raw = std_wav(frames=16000)
    info = parse_wav_header(raw[:44])
    assert (info.data_offset, info.data_size) == (44, 32000)


@pytest.mark.parametrize(
    ("tag", "bits", "encoding"),
    [
        (1, 16, "pcm_s16le"),
        (1, 32, "pcm_s32le"),
        (3, 32, "pcm_f32le"),
        (3, 16, "pcm_f16le"),
        (7, 8, "pcm_mulaw"),
        (6, 8, "pcm_alaw"),
        (1, 8, None),
        (1, 24, None),
        (3, 64, None),
        (7, 16, None),
        (2, 4, None),  # ADPCM
    ],
)
@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
def test_hand_made_wavs(tag: int, bits: int, encoding: str | None, extensible: bool) -> None:
    raw = hand_wav(tag, bits, rate=8000, extensible=extensible, data=b"\x05" * 8)
    info = parse_wav_header(raw)
    fmt_size = 40 if extensible else 16
    assert info == WavInfo(
        encoding=encoding,  # type: ignore[arg-type]
        sample_rate=8000,
        channels=1,
        bits_per_sample=bits,
        format_tag=tag,  # the real tag, also for WAVE_FORMAT_EXTENSIBLE
        data_offset=12 + 8 + fmt_size + 8,
        data_size=8,
    )
    assert raw[info.data_offset :] == b"\x05" * 8


def test_list_chunk_before_data_is_skipped() -> None:
    info_list = chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 6) + b"Lavf\x00\x00")
    raw = hand_wav(1, 16, rate=16000, before_data=info_list, data=b"\x07\x00\x08\x00")
    info = parse_wav_header(raw)
    assert info.data_offset == 12 + 24 + len(info_list) + 8
    assert raw[info.data_offset : info.data_offset + info.data_size] == b"\x07\x00\x08\x00"
    assert info.encoding == "pcm_s16le"


@pytest.mark.parametrize("odd", [1, 3, 5, 17])
def test_odd_sized_chunks_are_padded(odd: int) -> None:
    junk = chunk(b"JUNK", b"j" * odd)
    assert len(junk) == 8 + odd + 1
    raw = hand_wav(
        3, 32, rate=16000, before_fmt=junk, before_data=chunk(b"fact", b"abc"), data=b"\x09" * 4
    )
    info = parse_wav_header(raw)
    assert info.encoding == "pcm_f32le"
    assert info.data_offset == 12 + len(junk) + 24 + 12 + 8
    assert raw[info.data_offset :] == b"\x09" * 4


def test_rf64_is_accepted() -> None:
    ds64 = chunk(b"ds64", struct.pack("<QQQI", 100, 64, 16, 0))
    raw = hand_wav(1, 16, rate=16000, magic=b"RF64", before_fmt=ds64, data=b"")
    raw = raw[:-4] + struct.pack("<I", 0xFFFFFFFF)  # streamed: the size lives in ds64
    info = parse_wav_header(raw)
    assert (info.encoding, info.data_size, info.data_offset) == ("pcm_s16le", 0xFFFFFFFF, len(raw))


@pytest.mark.parametrize(
    ("raw", "fmt", "message"),
    [
        (
            std_wav(channels=2),
            AudioFormat("pcm_s16le", 16000),
            "WAV file has 2 channels but the protocol takes mono",
        ),
        (
            std_wav(rate=8000),
            AudioFormat("pcm_s16le", 16000),
            "WAV file is 8000 Hz but the session expects 16000 Hz",
        ),
        (
            std_wav(width=1),
            AudioFormat("pcm_s16le", 16000),
            "WAV file is format tag 1, 8-bit but the session expects pcm_s16le",
        ),
        (
            hand_wav(7, 8),
            AudioFormat("pcm_alaw", 8000),
            "WAV file is pcm_mulaw but the session expects pcm_alaw",
        ),
        (
            hand_wav(1, 32, rate=8000, channels=2),
            AudioFormat("pcm_s16le", 16000),
            "WAV file has 2 channels but the protocol takes mono; "
            "is pcm_s32le but the session expects pcm_s16le; "
            "is 8000 Hz but the session expects 16000 Hz",
        ),
    ],
)
def test_check_matches_names_each_problem(raw: bytes, fmt: AudioFormat, message: str) -> None:
    with pytest.raises(InvalidAudioError) as exc:
        parse_wav_header(raw).check_matches(fmt)
    # What is wrong, then how to fix it (issue 21, first hour #7).
    assert str(exc.value) == f"{message}. {convert_hint(fmt)}"


def convert_hint(fmt: AudioFormat) -> str:
    return (
        "Convert it for the session with cartesia_stt_async.audio.convert_wav(path, "
        f"encoding={fmt.encoding!r}, sample_rate={fmt.sample_rate}), or open the session "
        "in the file's own format (load_wav(path).format)"
    )


def test_check_matches_uses_the_given_name() -> None:
    with pytest.raises(InvalidAudioError, match=r"^speech\.wav is 8000 Hz"):
        parse_wav_header(std_wav(rate=8000)).check_matches(
            AudioFormat("pcm_s16le", 16000), name="speech.wav"
        )


@pytest.mark.parametrize(
    ("tag", "bits", "encoding"),
    [(1, 32, "pcm_s32le"), (3, 32, "pcm_f32le"), (7, 8, "pcm_mulaw"), (6, 8, "pcm_alaw")],
)
def test_check_matches_accepts_a_matching_file(tag: int, bits: int, encoding: str) -> None:
    parse_wav_header(hand_wav(tag, bits, rate=8000)).check_matches(AudioFormat(encoding, 8000))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "not a WAV file"),
        (b"RIFF\x00\x00\x00\x00WAV", "not a WAV file"),
        (b"ID3\x03" + bytes(40), "not a WAV file"),
        (b"RIFX" + std_wav()[4:], "not a WAV file"),
        (std_wav()[:8] + b"AVI " + std_wav()[12:], "not a WAV file"),
        (b"OggS" + bytes(60), "not a WAV file"),
        (std_wav()[:30], "WAV fmt chunk is truncated"),
        (std_wav()[:35], "WAV fmt chunk is truncated"),
        (std_wav()[:12], "no data chunk"),
        (std_wav()[:36], "no data chunk"),
        (std_wav()[:43], "no data chunk"),
        (b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00", "data chunk comes before its fmt"),
        (
            b"RIFF\x00\x00\x00\x00WAVE"
            + chunk(b"fmt ", fmt_body(1, 16)[:14])
            + chunk(b"data", b""),
            "WAV fmt chunk is truncated",
        ),
        (
            # Extensible tag, but only the 16-byte basic fmt body.
            b"RIFF\x00\x00\x00\x00WAVE" + chunk(b"fmt ", fmt_body(1, 16, extensible=True)[:16]),
            "WAV extensible fmt chunk is truncated",
        ),
        (hand_wav(1, 16, extensible=True)[: 12 + 8 + 20], "WAV extensible fmt chunk is truncated"),
        (
            # A chunk whose size runs past the head: the data chunk is not in the first bytes.
            b"RIFF\x00\x00\x00\x00WAVE"
            + chunk(b"fmt ", fmt_body(1, 16))
            + b"LIST"
            + struct.pack("<I", 10_000)
            + bytes(16),
            "no data chunk",
        ),
    ],
)
def test_broken_headers(raw: bytes, match: str) -> None:
    with pytest.raises(InvalidAudioError, match=match):
        parse_wav_header(raw)


@pytest.mark.parametrize("source", ["std", "extensible", "list"])
def test_every_truncation_is_an_invalid_audio_error(source: str) -> None:
    raw = {
        "std": std_wav(),
        "extensible": hand_wav(3, 32, extensible=True),
        "list": hand_wav(1, 16, before_data=chunk(b"LIST", b"INFOabc")),
    }[source]
    whole = parse_wav_header(raw)
    for n in range(whole.data_offset):
        with pytest.raises(InvalidAudioError):
            parse_wav_header(raw[:n])
    assert parse_wav_header(raw[: whole.data_offset]) == whole


@pytest.mark.parametrize("seed", range(30))
def test_corrupt_headers_never_raise_anything_else(seed: int) -> None:
    rng = random.Random(seed)
    raw = bytearray(hand_wav(1, 16, extensible=seed % 2 == 1, before_data=chunk(b"LIST", b"ab")))
    for _ in range(rng.randrange(1, 6)):
        raw[rng.randrange(12, len(raw))] = rng.randrange(256)
    try:
        info = parse_wav_header(bytes(raw))
    except InvalidAudioError:
        return
    assert isinstance(info, WavInfo)
    assert 0 <= info.data_offset <= len(raw)
