"""Audio formats, reframing and WAV headers: exact bytes."""

from __future__ import annotations

import io
import random
import struct
import wave

import pytest

from cartesia_stt_async.errors import InvalidAudioError, UsageError
from cartesia_stt_async.protocol.audio import (
    ENCODINGS,
    AudioFormat,
    Reframer,
    parse_wav_header,
)


@pytest.mark.parametrize(
    ("encoding", "rate", "frame"),
    [
        ("pcm_s16le", 16000, 3200),
        ("pcm_s16le", 8000, 1600),
        ("pcm_s32le", 16000, 6400),
        ("pcm_f16le", 24000, 4800),
        ("pcm_f32le", 44100, 17640),
        ("pcm_mulaw", 8000, 800),
        ("pcm_alaw", 8000, 800),
        ("pcm_s16le", 22050, 4410),
    ],
)
def test_frame_bytes_per_100ms(encoding: str, rate: int, frame: int) -> None:
    fmt = AudioFormat(encoding, rate)
    assert fmt.frame_bytes() == frame
    assert fmt.frame_bytes(100) % fmt.sample_width == 0
    assert fmt.duration(frame) == pytest.approx(0.1)


def test_six_encodings() -> None:
    assert ENCODINGS == (
        "pcm_s16le",
        "pcm_s32le",
        "pcm_f16le",
        "pcm_f32le",
        "pcm_mulaw",
        "pcm_alaw",
    )


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [
        ("mp3", 16000),
        ("PCM_S16LE", 16000),
        ("pcm_s16le", 0),
        ("pcm_s16le", -8000),
        ("pcm_s16le", True),
        ("pcm_s16le", 16000.0),
        ("pcm_s16le", "16000"),
    ],
)
def test_bad_formats(encoding: str, rate: object) -> None:
    with pytest.raises(UsageError):
        AudioFormat(encoding, rate)  # type: ignore[arg-type]


def test_check_aligned() -> None:
    fmt = AudioFormat("pcm_s32le", 16000)
    fmt.check_aligned(8)
    with pytest.raises(InvalidAudioError, match="6 bytes is not a whole number"):
        fmt.check_aligned(6)


@pytest.mark.parametrize("seed", range(20))
def test_reframer_reproduces_the_stream_in_exact_frames(seed: int) -> None:
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20000) * 2))
    reframer = Reframer(3200, 2)
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 3, 7, 160, 3199, 3200, 3201, 6400, 9999])
        frames += reframer.push(data[pos : pos + n])
        pos += n
    last = reframer.flush()
    assert all(len(f) == 3200 for f in frames)
    assert len(last) < 3200
    assert b"".join(frames) + last == data
    assert reframer.pending == 0


def test_reframer_fast_path_and_memoryview() -> None:
    reframer = Reframer(4, 2)
    assert reframer.push(memoryview(b"abcdefgh")) == [b"abcd", b"efgh"]
    assert reframer.push(b"ij") == []
    assert reframer.pending == 2
    assert reframer.flush() == b"ij"
    assert reframer.flush() == b""


def test_reframer_rejects_a_stray_byte_at_flush() -> None:
    reframer = Reframer(3200, 2)
    assert reframer.push(b"\x00" * 101) == []
    with pytest.raises(InvalidAudioError, match="1 stray byte"):
        reframer.flush()
    assert reframer.pending == 0  # dropped, so the session stays aligned


@pytest.mark.parametrize(("size", "width"), [(0, 2), (3, 2), (-4, 2)])
def test_reframer_bad_sizes(size: int, width: int) -> None:
    with pytest.raises(UsageError):
        Reframer(size, width)


def std_wav(channels: int = 1, width: int = 2, rate: int = 16000, frames: int = 10) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01" * frames * channels * width)
    return buf.getvalue()


def hand_wav(
    tag: int,
    bits: int,
    rate: int = 8000,
    channels: int = 1,
    extensible: bool = False,
    extra_chunks: bytes = b"",
    data: bytes = b"\x00\x00\x00\x00",
) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits
    )
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_standard_library_wav() -> None:
    raw = std_wav()
    info = parse_wav_header(raw)
    assert (info.encoding, info.sample_rate, info.channels, info.bits_per_sample) == (
        "pcm_s16le",
        16000,
        1,
        16,
    )
    assert info.data_offset == 44
    assert info.data_size == 20
    assert raw[info.data_offset :] == b"\x01" * 20
    info.check_matches(AudioFormat("pcm_s16le", 16000))


@pytest.mark.parametrize(
    ("tag", "bits", "encoding"),
    [
        (1, 32, "pcm_s32le"),
        (3, 32, "pcm_f32le"),
        (3, 16, "pcm_f16le"),
        (7, 8, "pcm_mulaw"),
        (6, 8, "pcm_alaw"),
        (1, 8, None),
        (1, 24, None),
        (3, 64, None),
    ],
)
@pytest.mark.parametrize("extensible", [False, True])
def test_hand_made_wavs(tag: int, bits: int, encoding: str | None, extensible: bool) -> None:
    info = parse_wav_header(hand_wav(tag, bits, extensible=extensible))
    assert info.encoding == encoding
    assert info.format_tag == tag


def test_chunks_before_data_are_skipped_with_padding() -> None:
    odd = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\x00"  # padded to even
    raw = hand_wav(1, 16, extra_chunks=odd, data=b"\x07\x00")
    info = parse_wav_header(raw)
    assert raw[info.data_offset : info.data_offset + info.data_size] == b"\x07\x00"


@pytest.mark.parametrize(
    ("raw", "fmt", "match"),
    [
        (std_wav(channels=2), AudioFormat("pcm_s16le", 16000), "2 channels"),
        (std_wav(rate=8000), AudioFormat("pcm_s16le", 16000), "8000 Hz"),
        (std_wav(width=1), AudioFormat("pcm_s16le", 16000), "format tag 1, 8-bit"),
        (hand_wav(7, 8), AudioFormat("pcm_alaw", 8000), "pcm_mulaw but the session expects"),
    ],
)
def test_mismatch_names_the_problem(raw: bytes, fmt: AudioFormat, match: str) -> None:
    with pytest.raises(InvalidAudioError, match=match):
        parse_wav_header(raw).check_matches(fmt)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "not a WAV"),
        (b"ID3\x03" + bytes(40), "not a WAV"),
        (std_wav()[:30], "truncated"),
        (std_wav()[:36], "no data chunk"),
        (b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00", "before its fmt"),
    ],
)
def test_broken_headers(raw: bytes, match: str) -> None:
    with pytest.raises(InvalidAudioError, match=match):
        parse_wav_header(raw)
