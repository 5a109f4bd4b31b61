"""The twin's sample conversion: G.711 tables, float/int scaling, streaming resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cartesia_stt_async.protocol.audio import ENCODINGS
from cartesia_stt_async.twin import _dsp
from cartesia_stt_async.twin.wer import normalize, word_error_rate


def tone(freq: float, rate: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# G.711 reference values (ITU-T G.711 / the classic g711.c): code -> 16-bit sample.
MULAW = {0x00: -32124, 0x7F: 0, 0x80: 32124, 0xFF: 0, 0x70: -120, 0x10: -15996}
ALAW = {0xD5: 8, 0x55: -8, 0xAA: 32256, 0x2A: -32256, 0x00: -5504, 0x80: 5504}


@pytest.mark.parametrize(("code", "value"), sorted(MULAW.items()))
def test_mulaw_decodes_to_the_reference_values(code: int, value: int) -> None:
    assert round(float(_dsp.decode(bytes([code]), "pcm_mulaw")[0]) * 32768) == value


@pytest.mark.parametrize(("code", "value"), sorted(ALAW.items()))
def test_alaw_decodes_to_the_reference_values(code: int, value: int) -> None:
    assert round(float(_dsp.decode(bytes([code]), "pcm_alaw")[0]) * 32768) == value


@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw"])
def test_g711_encode_inverts_decode_for_every_code(encoding: str) -> None:
    codes = bytes(range(256))
    again = _dsp.encode(_dsp.decode(codes, encoding), encoding)
    # Only mu-law's two zeros (0x7F, 0xFF) may swap.
    assert [c for c, d in zip(codes, again, strict=True) if c != d and {c, d} != {0x7F, 0xFF}] == []


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_round_trips_within_its_precision(encoding: str) -> None:
    x = tone(440, 16000)
    y = _dsp.decode(_dsp.encode(x, encoding), encoding)
    tolerance = {"pcm_mulaw": 0.02, "pcm_alaw": 0.02, "pcm_f16le": 3e-4}.get(encoding, 4e-5)
    assert y.dtype == np.float32 and len(y) == len(x)
    assert float(np.abs(y - x).max()) < tolerance


def test_float_input_is_clipped_and_nan_is_silence() -> None:
    data = np.array([2.0, -3.0, np.nan], dtype="<f4").tobytes()
    assert _dsp.decode(data, "pcm_f32le").tolist() == [1.0, -1.0, 0.0]


def resample(x: np.ndarray, source: int, target: int, piece: int | None = None) -> np.ndarray:
    r = _dsp.Resampler(source, target)
    step = piece or max(1, len(x))
    parts = [r.process(x[i : i + step]) for i in range(0, len(x), step)]
    return np.concatenate([*parts, r.process(x[:0], final=True)])


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 16001])
def test_resampling_is_the_same_whole_or_in_100_ms_pieces(rate: int) -> None:
    x = tone(440, 16000)
    whole = resample(x, 16000, rate)
    pieces = resample(x, 16000, rate, piece=1600)
    assert len(whole) == math.ceil(len(x) * rate / 16000)  # outputs up to the last input
    np.testing.assert_allclose(pieces, whole, atol=1e-6)


@pytest.mark.parametrize("freq", [440, 3400])  # 3400 Hz: 85 % of 8 kHz audio's Nyquist
@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_resampling_keeps_a_tone_in_phase_and_round_trips(rate: int, freq: int) -> None:
    x = tone(freq, 16000)
    y = resample(x, 16000, rate)
    edge = rate // 10  # the ends see the silence before and after the stream
    np.testing.assert_allclose(y[edge:-edge], tone(freq, rate)[edge:-edge], atol=1e-4)
    z = resample(y, rate, 16000)
    assert len(z) == len(x)
    assert float(np.abs(z[1600:-1600] - x[1600:-1600]).max()) < 1e-4


def test_equal_rates_pass_samples_through() -> None:
    x = tone(440, 16000)
    assert np.array_equal(resample(x, 16000, 16000), x)


def test_downsampling_removes_what_the_new_rate_cannot_carry() -> None:
    high = tone(7000, 48000)  # above the 4 kHz Nyquist of 8 kHz audio
    y = resample(high, 48000, 8000)
    assert float(np.abs(y[800:-800]).max()) < 0.01  # no alias at 1 kHz


def test_word_error_rate() -> None:
    assert normalize("It's nine O'Clock, Sandy!") == ["its", "nine", "oclock", "sandy"]
    assert word_error_rate("the lazy dog", "the lazy dog") == 0.0
    assert word_error_rate("the lazy dog", "a lazy dog barks") == pytest.approx(2 / 3)
    assert word_error_rate(["a b", "c d"], ["a b", "c"]) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="no words"):
        word_error_rate("", "x")


def band_energy(x: np.ndarray, rate: int, low: float, high: float) -> float:
    """Energy of ``x`` between ``low`` and ``high`` Hz (Hann window: no leakage from its ends)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


@pytest.mark.parametrize("source", [8000, 11025])
def test_fill_band_fills_only_the_band_the_audio_lacks(source: int) -> None:
    """Narrowband audio upsampled to 16 kHz has nothing above the source's Nyquist; the fill
    puts a quiet mirror image and quiet noise there and leaves the band below alone."""
    x = resample(tone(1000, source), source, 16000)
    y = _dsp.fill_band(x, source)
    assert len(y) == len(x) and y.dtype == np.float32
    np.testing.assert_array_equal(_dsp.fill_band(x, source), y)  # the same every time
    x, y = x[1600:-1600], y[1600:-1600]  # the ends see the silence before and after
    total = band_energy(x, 16000, 0, 8000)
    top = source / 2 + 200
    assert band_energy(x - y, 16000, 0, source / 2 - 300) < 1e-5 * total  # left alone
    assert band_energy(x, 16000, top, 8000) < 1e-8 * total  # empty before
    assert 1e-4 < band_energy(y, 16000, top, 8000) / total < 0.05  # filled after
    if source == 8000:  # the 1 kHz tone's mirror image at 7 kHz, at FOLD_GAIN
        image = band_energy(y, 16000, 6900, 7100) / band_energy(y, 16000, 900, 1100)
        assert image == pytest.approx(_dsp.FOLD_GAIN**2, rel=0.1)


def test_fill_band_leaves_wideband_audio_alone() -> None:
    x = tone(440, 16000)
    assert _dsp.fill_band(x, 16000) is x
    assert _dsp.fill_band(x, 48000) is x
    assert len(_dsp.fill_band(x[:0], 8000)) == 0
