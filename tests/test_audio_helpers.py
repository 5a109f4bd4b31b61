"""``cartesia_stt_async.audio``: any common WAV file to a session's encoding and sample rate."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cartesia_stt_async as stt
from cartesia_stt_async import _wavconvert as engine
from cartesia_stt_async import cli
from cartesia_stt_async.audio import ResamplingUnavailableError, convert_wav, load_wav
from cartesia_stt_async.errors import UsageError
from cartesia_stt_async.protocol.audio import ENCODINGS
from cartesia_stt_async.twin import serve
from cartesia_stt_async.twin.wer import word_error_rate

from .conftest import SLACK
from .speech import shared_engine, speech

ROOT = Path(__file__).resolve().parents[1]
PCM, FLOAT, ALAW, MULAW = 1, 3, 6, 7
# (name, format tag, bits): every sample format the helpers read.
FORMATS = [
    ("u8", PCM, 8),
    ("s16", PCM, 16),
    ("s24", PCM, 24),
    ("s32", PCM, 32),
    ("f16", FLOAT, 16),
    ("f32", FLOAT, 32),
    ("f64", FLOAT, 64),
    ("mulaw", MULAW, 8),
    ("alaw", ALAW, 8),
]
NATIVE = {"s16": "pcm_s16le", "s32": "pcm_s32le", "f16": "pcm_f16le", "f32": "pcm_f32le"}
NATIVE |= {"mulaw": "pcm_mulaw", "alaw": "pcm_alaw"}
TOLERANCE = {"u8": 1 / 128, "mulaw": 0.02, "alaw": 0.02, "f16": 1e-3}


def tone(rate: int, seconds: float = 0.25, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def samples_as(x: np.ndarray, name: str) -> bytes:
    """Float samples written the way a WAV of format ``name`` stores them."""
    if name == "u8":
        return bytes((np.rint(x * 127) + 128).astype(np.uint8).tobytes())
    if name == "s24":
        wide = np.rint(x * 8388607).astype("<i4").tobytes()
        return b"".join(wide[i : i + 3] for i in range(0, len(wide), 4))
    scale = {"s16": ("<i2", 32767), "s32": ("<i4", 2147483647)}
    if name in scale:
        dtype, full = scale[name]
        return bytes(np.rint(x * full).astype(dtype).tobytes())
    floats = {"f16": "<f2", "f32": "<f4", "f64": "<f8"}
    if name in floats:
        return x.astype(floats[name]).tobytes()
    return engine.np_encode(x.astype(np.float32), NATIVE[name])


def make_wav(
    body: bytes,
    *,
    tag: int,
    bits: int,
    channels: int = 1,
    rate: int = 16000,
    extensible: bool = False,
    metadata: int = 0,
    data_size: int | None = None,
) -> bytes:
    """A RIFF/WAVE file, optionally WAVE_FORMAT_EXTENSIBLE, with a LIST chunk before the data."""
    block = channels * max(bits // 8, 1)
    fmt = struct.pack(
        "<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits
    )
    if extensible:  # cbSize, valid bits, channel mask, then the sub-format GUID
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail
    elif tag != PCM:
        fmt += b"\x00\x00"
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if metadata:
        chunks += b"LIST" + struct.pack("<I", metadata) + bytes(metadata)
    size = len(body) if data_size is None else data_size
    chunks += b"data" + struct.pack("<I", size) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def wav_of(name: str, tag: int, bits: int, channels: int, rate: int = 16000, **kw: Any) -> bytes:
    """A tone in every channel: channel c carries the tone times (1 - c) / 2 ** c ... so the
    mono mix is a known multiple of the tone (1 for mono, 0.75 for stereo)."""
    x = tone(rate)
    gains = [1.0, 0.5, 0.25, 0.125][:channels]
    frames = np.stack([x * g for g in gains], axis=1).reshape(-1)
    return make_wav(
        samples_as(frames, name), tag=tag, bits=bits, channels=channels, rate=rate, **kw
    )


@pytest.mark.parametrize("extensible", [False, True])
@pytest.mark.parametrize("channels", [1, 2, 4])
@pytest.mark.parametrize(("name", "tag", "bits"), FORMATS)
def test_load_wav_reads_every_common_format(
    name: str, tag: int, bits: int, channels: int, extensible: bool
) -> None:
    wav = wav_of(name, tag, bits, channels, extensible=extensible, metadata=6)
    audio = load_wav(wav)
    as_is = channels == 1 and name in NATIVE
    assert audio.encoding == (NATIVE[name] if as_is else "pcm_s16le")
    assert (audio.sample_rate, audio.wav.channels, audio.wav.format_tag) == (16000, channels, tag)
    assert (audio.converted == "") == as_is
    if channels > 1:
        assert f"{channels} channels averaged to mono" in audio.converted
    got = engine.np_decode(audio.data, audio.encoding)
    mix = np.mean([1.0, 0.5, 0.25, 0.125][:channels])
    expected = tone(16000) * mix
    assert len(got) == len(expected) and audio.duration == pytest.approx(0.25)
    assert float(np.abs(got - expected).max()) < TOLERANCE.get(name, 1e-4) + 1 / 32768


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_convert_wav_gives_the_session_encoding_and_rate(encoding: str, rate: int) -> None:
    wav = wav_of("s24", PCM, 24, channels=2, rate=44100)
    data = convert_wav(wav, encoding=encoding, sample_rate=rate)
    got = engine.np_decode(data, encoding)
    expected = tone(rate) * 0.75
    assert abs(len(got) - len(expected)) <= 1
    n = min(len(got), len(expected))
    edge = rate // 50  # the ends see the silence around the signal
    tolerance = 0.02 if encoding in ("pcm_mulaw", "pcm_alaw") else 1e-3
    assert float(np.abs(got[edge : n - edge] - expected[edge : n - edge]).max()) < tolerance


def test_what_needs_no_change_comes_back_as_the_files_own_bytes() -> None:
    body = samples_as(tone(16000), "s16")
    wav = make_wav(body, tag=PCM, bits=16)
    assert load_wav(wav).data == body and load_wav(wav).converted == ""
    assert convert_wav(wav, encoding="pcm_s16le", sample_rate=16000) == body


@pytest.mark.parametrize(("name", "tag", "bits"), FORMATS)
@pytest.mark.parametrize("channels", [1, 3])
def test_numpy_and_pure_python_give_identical_bytes(
    name: str, tag: int, bits: int, channels: int
) -> None:
    rng = np.random.default_rng(7)
    frames = rng.uniform(-1.2, 1.2, 4000 * channels)  # beyond full scale: clipping too
    body = samples_as(np.clip(frames, -1, 1) if name[0] in "su" else frames, name)
    wav = engine.parse_wav(make_wav(body, tag=tag, bits=bits, channels=channels), "t")
    fast = engine.mono_samples(wav, use_numpy=True)
    slow = engine.mono_samples(wav, use_numpy=False)
    assert fast.dtype == np.float32 and isinstance(slow, array)
    assert fast.tobytes() == slow.tobytes()
    for encoding in ENCODINGS:
        assert engine.np_encode(fast, encoding) == engine.py_encode(slow, encoding), encoding


def test_every_g711_code_decodes_alike_in_both_codecs() -> None:
    codes = bytes(range(256))
    for encoding in ("pcm_mulaw", "pcm_alaw"):
        assert (
            engine.np_decode(codes, encoding).tobytes()
            == engine.py_decode(codes, encoding).tobytes()
        )


def test_sources_bytes_paths_and_file_objects(tmp_path: Path) -> None:
    wav = wav_of("s16", PCM, 16, channels=2)
    path = tmp_path / "a.wav"
    path.write_bytes(wav)
    expected = load_wav(wav).data
    with path.open("rb") as binary:
        sources: list[Any] = [bytearray(wav), memoryview(wav), str(path), path, io.BytesIO(wav)]
        sources.append(binary)
        for source in sources:
            assert load_wav(source).data == expected, type(source)
    with path.open("r", encoding="latin-1") as text, pytest.raises(stt.UsageError, match="binary"):
        load_wav(text)  # type: ignore[arg-type]
    with pytest.raises(stt.UsageError, match="int"):
        load_wav(42)  # type: ignore[arg-type]
    with pytest.raises(stt.UsageError, match="No such file"):
        load_wav(tmp_path / "missing.wav")


@pytest.mark.parametrize(
    ("wav", "needle"),
    [
        (b"hello, not a wav file", "not a WAV file"),
        (make_wav(bytes(100), tag=2, bits=4), "4-bit MS ADPCM"),
        (make_wav(bytes(100), tag=PCM, bits=12), "12-bit PCM"),
        (make_wav(bytes(100), tag=0x55, bits=0), "format tag 85"),
        (make_wav(bytes(100), tag=PCM, bits=16, channels=0), "no channels"),
        (make_wav(bytes(100), tag=PCM, bits=16, rate=0), "sample rate is 0"),
    ],
)
def test_unreadable_input_is_an_invalid_audio_error_naming_the_problem(
    wav: bytes, needle: str
) -> None:
    for call in (load_wav, lambda w: convert_wav(w, encoding="pcm_s16le", sample_rate=16000)):
        with pytest.raises(stt.InvalidAudioError, match=needle):
            call(wav)


def test_bad_targets_are_usage_errors_before_reading(tmp_path: Path) -> None:
    missing = tmp_path / "never-read.wav"
    with pytest.raises(stt.UsageError, match="encoding"):
        convert_wav(missing, encoding="mp3", sample_rate=16000)
    with pytest.raises(stt.UsageError, match="sample_rate"):
        convert_wav(missing, encoding="pcm_s16le", sample_rate=0)


def test_odd_files_big_metadata_streamed_sizes_and_partial_frames() -> None:
    body = samples_as(tone(16000), "s16")
    big_metadata = make_wav(body, tag=PCM, bits=16, metadata=100_000)
    assert load_wav(big_metadata).data == body
    streamed = make_wav(body, tag=PCM, bits=16, data_size=0)  # size unknown when written
    assert load_wav(streamed).data == body
    overstated = make_wav(body, tag=PCM, bits=16, data_size=0xFFFFFFF0)
    assert load_wav(overstated).data == body
    stereo = make_wav(body + b"\x01\x02\x03", tag=PCM, bits=16, channels=2)
    assert len(load_wav(stereo).data) == len(body) // 2  # the partial frame is dropped


NO_NUMPY = """
import json, sys
sys.modules["numpy"] = None  # as if numpy and soxr were not installed
sys.modules["soxr"] = None
from cartesia_stt_async import CartesiaSTTError, audio
wav = open(sys.argv[1], "rb").read()
out = {"load": audio.load_wav(wav).data.hex(),
       "mulaw": audio.convert_wav(wav, encoding="pcm_mulaw", sample_rate=22050).hex()}
try:
    audio.convert_wav(wav, encoding="pcm_s16le", sample_rate=16000)
except audio.ResamplingUnavailableError as err:
    out["error"] = str(err)
    out["types"] = [isinstance(err, ImportError), isinstance(err, CartesiaSTTError)]
print(json.dumps(out))
"""


def test_without_numpy_only_resampling_needs_the_audio_extra(tmp_path: Path) -> None:
    wav = wav_of("s24", PCM, 24, channels=2, rate=22050)
    path = tmp_path / "stereo24.wav"
    path.write_bytes(wav)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", NO_NUMPY, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60 * SLACK,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert bytes.fromhex(out["load"]) == load_wav(wav).data
    assert bytes.fromhex(out["mulaw"]) == convert_wav(wav, encoding="pcm_mulaw", sample_rate=22050)
    assert "pip install -e '.[audio]' in a checkout" in out["error"]
    assert "22050 Hz" in out["error"] and out["types"] == [True, True]


MEMORY = """
import json, struct, sys, tracemalloc
if sys.argv[1] == "pure-python":
    sys.modules["numpy"] = None  # as if numpy and soxr were not installed
    sys.modules["soxr"] = None
else:
    import numpy  # imported before measuring
from cartesia_stt_async import audio
size, peaks = int(sys.argv[2]), {}
for name in sys.argv[3:]:
    tag, bits, channels, rate = FORMATS[name]
    block = channels * bits // 8
    body = (bytes(range(256)) * (size // 256 + 1))[: size // block * block]
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    raw = (b"RIFF" + struct.pack("<I", 28 + len(fmt) + len(body)) + b"WAVEfmt "
           + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body)
    del body
    tracemalloc.start()
    if rate == 16000:
        out = audio.load_wav(raw).data
    else:
        out = audio.convert_wav(raw, encoding="pcm_s16le", sample_rate=16000)
    peaks[name] = [len(raw), len(out), tracemalloc.get_traced_memory()[1]]
    tracemalloc.stop()
    del out, raw
print(json.dumps(peaks))
"""
# Format tag, bits, channels, sample rate (other than 16000: resampled to it by convert_wav).
MEMORY_FORMATS = {"u8": (1, 8, 1, 16000), "u8-stereo": (1, 8, 2, 16000)}
MEMORY_FORMATS |= {"s24": (1, 24, 1, 16000), "alaw-stereo": (6, 8, 2, 16000)}
MEMORY_FORMATS |= {"f32-stereo": (3, 32, 2, 16000), "u8-8k-resampled": (1, 8, 1, 8000)}


@pytest.mark.parametrize(
    ("codec", "size", "names"),
    [("numpy", 2 << 20, list(MEMORY_FORMATS)), ("pure-python", 1 << 20, ["u8", "u8-stereo"])],
)
def test_converting_a_file_takes_the_results_memory_plus_a_little(
    codec: str, size: int, names: list[str]
) -> None:
    """An 8-bit WAV upload peaked at about 30 times its size in load_wav with numpy (80 times
    without): the whole file went through float temporaries at once. It is converted (and
    resampled) a block at a time now: the peak is the result plus a few MB, whatever the
    file's size."""
    script = f"FORMATS = {MEMORY_FORMATS!r}\n" + MEMORY
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", script, codec, str(size), *names],
        capture_output=True,
        text=True,
        env=env,
        timeout=120 * SLACK,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for name, (file_size, result, peak) in json.loads(run.stdout).items():
        assert result > 0
        assert peak < result + (4 << 20), (name, file_size, result, peak)
        if name.startswith("u8"):
            assert peak < 8 * file_size, (name, file_size, result, peak)


def test_resampling_a_block_at_a_time_gives_the_whole_signals_result() -> None:
    # Longer than several conversion blocks, stereo, at a rate that is not 16 kHz.
    data = wav_of("u8", PCM, 8, channels=2, rate=22050)
    data = make_wav(
        engine.parse_wav(data, "t").body.tobytes() * 12, tag=PCM, bits=8, channels=2, rate=22050
    )
    wav = engine.parse_wav(data, "t")
    assert len(wav.body) // 2 > 2 * engine._BLOCK_FRAMES
    whole = engine.resample(engine.mono_samples(wav, use_numpy=True), 22050, 16000)
    for encoding in ("pcm_s16le", "pcm_f32le", "pcm_mulaw"):
        converted = convert_wav(data, encoding=encoding, sample_rate=16000)
        assert converted == engine.np_encode(whole, encoding), encoding


def test_resampling_unavailable_error_is_in_both_trees() -> None:
    assert issubclass(ResamplingUnavailableError, stt.ConfigurationError)
    assert issubclass(ResamplingUnavailableError, ImportError)


def test_the_clis_loader_keeps_its_contract(tmp_path: Path) -> None:
    path = tmp_path / "stereo24.wav"
    path.write_bytes(wav_of("s24", PCM, 24, channels=2))
    loaded = cli._load_wav(str(path))
    assert (loaded.encoding, loaded.sample_rate) == ("pcm_s16le", 16000)
    assert "24-bit PCM to 16-bit PCM" in loaded.converted
    assert "2 channels averaged to mono" in loaded.converted
    path.write_bytes(wav_of("s16", PCM, 16, channels=1, rate=96000))
    with pytest.raises(stt.InvalidAudioError, match="96000 Hz is outside"):
        cli._load_wav(str(path))


@pytest.mark.speech
@pytest.mark.asyncio
async def test_a_converted_upload_is_recognized_like_the_original() -> None:
    """Speech as a 44.1 kHz stereo 24-bit upload, converted back to a 16 kHz session."""
    sentence = "Please call me back when you get home"
    clip = speech(sentence)
    hifi = engine.resample(engine.np_decode(clip, "pcm_s16le"), 16000, 44100)
    frames = np.stack([hifi, hifi * 0.5], axis=1).reshape(-1).astype(np.float64)
    upload = make_wav(samples_as(frames, "s24"), tag=PCM, bits=24, channels=2, rate=44100)
    audio = convert_wav(upload, encoding="pcm_s16le", sample_rate=16000)
    assert abs(len(audio) - len(clip)) <= 4
    async with serve(engine=shared_engine()) as twin:
        texts = []
        for data in (clip, audio):
            client = stt.AsyncCartesia(api_key="k", base_url=twin.base_url)
            async with client.stt.manual_finalize.websocket(
                model="ink-2", encoding="pcm_s16le", sample_rate=16000, speed=None
            ) as conn:
                await conn.send_audio(data)
                texts.append((await conn.finalize(timeout=30 * SLACK)).text)
    assert word_error_rate(sentence, texts[1]) <= 0.35
    assert word_error_rate(sentence, texts[1]) <= word_error_rate(sentence, texts[0]) + 0.15


def test_a_path_that_cannot_be_read_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(UsageError, match=r"cannot read audio file .*nope\.wav") as caught:
        load_wav(missing)
    assert caught.value.__context__ is None  # the OSError is not kept
    with pytest.raises(UsageError, match="cannot read audio file"):
        convert_wav(str(tmp_path), encoding="pcm_s16le", sample_rate=16000)  # a directory
