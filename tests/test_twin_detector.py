"""The twin's turn detector (``twin/_detector.py``), synchronously and with exact window counts:
no server, no clock; audio time is all there is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cartesia_stt_async.protocol.audio import ENCODINGS
from cartesia_stt_async.twin import _dsp
from cartesia_stt_async.twin._detector import (
    Decision,
    LevelMeter,
    TurnDetector,
    TurnSettings,
    TurnState,
    Windows,
)

DEFAULT = TurnSettings()


def run(detector: TurnDetector, flags: list[bool]) -> list[tuple[int, Decision]]:
    """Push ``flags``; the decisions with the window position (1-based) they fell on."""
    out = []
    for flag in flags:
        decision = detector.push(flag)
        if decision is not None:
            out.append((detector.position, decision))
    return out


def state(detector: TurnDetector) -> TurnState:
    return detector.state  # through a call: mypy would narrow the attribute across pushes


def speech(n: int) -> list[bool]:
    return [True] * n


def pause(n: int) -> list[bool]:
    return [False] * n


def test_default_settings_in_windows_at_16k() -> None:
    # 10 ms windows; onset 30*log2(5)=69.7 ms, eager 300*log2(2.5)=396.6 ms,
    # end 300*log2(5)=696.6 ms, phrase 250 ms: all rounded up to whole windows.
    assert Windows.of(DEFAULT, 16000) == Windows(samples=160, onset=7, eager=40, end=70, phrase=25)


@pytest.mark.parametrize(
    ("settings", "onset", "eager", "end"),
    [
        (TurnSettings(start_threshold=0.5), 3, 40, 70),
        (TurnSettings(start_threshold=0.9), 10, 40, 70),
        (TurnSettings(eager_end_threshold=0.3), 7, 53, 70),
        (TurnSettings(eager_end_threshold=0.6), 7, 23, 70),
        (TurnSettings(end_threshold=0.05), 7, 40, 130),
        (TurnSettings(end_threshold=0.3, eager_end_threshold=0.5), 7, 30, 53),
        (TurnSettings(end_timeout_ms=640), 7, 40, 64),  # the timeout comes first
        (TurnSettings(end_threshold=0.05, end_timeout_ms=1000), 7, 40, 100),
        (TurnSettings(end_timeout_ms=11200), 7, 40, 70),
    ],
)
def test_thresholds_map_to_durations(
    settings: TurnSettings, onset: int, eager: int, end: int
) -> None:
    w = Windows.of(settings, 16000)
    assert (w.onset, w.eager, w.end) == (onset, eager, end)


@pytest.mark.parametrize(("rate", "samples"), [(8000, 80), (11025, 110), (44100, 441)])
def test_window_size_follows_the_rate(rate: int, samples: int) -> None:
    assert Windows.of(DEFAULT, rate).samples == samples


def test_a_turn_start_phrase_eager_end_and_end_fall_on_exact_windows() -> None:
    d = TurnDetector(DEFAULT, 16000)
    got = run(d, speech(6))
    assert got == [] and state(d) is TurnState.IDLE
    assert run(d, speech(1)) == [(7, Decision.START)]
    assert state(d) is TurnState.SPEAKING
    got = run(d, speech(50) + pause(100))
    # Pause windows 58..157: phrase at the 25th, eager end at the 40th, end at the 70th.
    assert got == [(82, Decision.PHRASE), (97, Decision.EAGER_END), (127, Decision.END)]
    assert state(d) is TurnState.IDLE


def test_onset_needs_an_unbroken_run() -> None:
    d = TurnDetector(DEFAULT, 16000)
    assert run(d, (speech(6) + pause(1)) * 5) == []
    assert run(d, speech(7)) == [(42, Decision.START)]


def test_speech_while_speaking_resets_the_pause() -> None:
    d = TurnDetector(DEFAULT, 16000)
    run(d, speech(7))
    # 39-window pauses never reach the eager end; one speech window resets each.
    got = run(d, (pause(39) + speech(1)) * 4)
    assert [x for _, x in got] == [Decision.PHRASE] * 4


def test_resume_needs_an_onset_and_shorter_bursts_count_as_pause() -> None:
    d = TurnDetector(DEFAULT, 16000)
    run(d, speech(7) + pause(40))
    assert state(d) is TurnState.EAGER_ENDED
    # A 6-window burst does not resume; the pause goes on counting through it.
    assert run(d, speech(6) + pause(23)) == []  # 69 windows of pause
    assert run(d, pause(1)) == [(7 + 40 + 6 + 24, Decision.END)]

    d = TurnDetector(DEFAULT, 16000)
    run(d, speech(7) + pause(40))
    assert run(d, speech(7)) == [(54, Decision.RESUME)]
    assert state(d) is TurnState.SPEAKING
    # The pause starts over after a resume: a second eager end 40 windows on.
    got = run(d, pause(40))
    assert got == [(54 + 25, Decision.PHRASE), (54 + 40, Decision.EAGER_END)]


def test_the_end_may_come_without_an_eager_end() -> None:
    # Thresholds so close that both pauses round to 53 windows: the end comes first.
    settings = TurnSettings(eager_end_threshold=0.3001, end_threshold=0.3)
    d = TurnDetector(settings, 16000)
    assert Windows.of(settings, 16000).eager == Windows.of(settings, 16000).end == 53
    assert run(d, speech(7) + pause(53)) == [
        (7, Decision.START),
        (32, Decision.PHRASE),
        (60, Decision.END),
    ]


def test_configure_applies_to_later_windows_of_the_open_turn() -> None:
    d = TurnDetector(DEFAULT, 16000)
    run(d, speech(7) + pause(45))  # eager-ended, 45 windows of pause so far
    d.configure(TurnSettings(eager_end_threshold=0.5, end_threshold=0.3))  # end: 53 windows
    assert run(d, pause(8)) == [(60, Decision.END)]
    d.configure(TurnSettings(start_threshold=0.5))  # onset: 3 windows
    assert run(d, speech(3)) == [(63, Decision.START)]


def test_close_ends_an_open_turn_only() -> None:
    d = TurnDetector(DEFAULT, 16000)
    assert d.close() is None
    run(d, speech(7))
    assert d.close() is Decision.END
    assert state(d) is TurnState.IDLE and d.close() is None
    run(d, speech(7) + pause(40))
    assert d.close() is Decision.END


def _tone(seconds: float, amplitude: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * math.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_level_meter_hears_speech_in_every_encoding(encoding: str) -> None:
    # -20 dBFS RMS is speech, -50 dBFS is not (the threshold is -40 dBFS).
    loud = _tone(0.1, 0.1 * math.sqrt(2))
    quiet = _tone(0.1, 0.003 * math.sqrt(2))
    meter = LevelMeter(encoding, 160)
    data = _dsp.encode(np.concatenate([loud, quiet, np.zeros(1600, np.float32)]), encoding)
    flags = [speech for _, speech in meter.windows(data)]
    assert flags == [True] * 10 + [False] * 20


def test_level_meter_windows_span_frames_and_offsets_are_exact() -> None:
    meter = LevelMeter("pcm_s16le", 160)  # 320 bytes a window
    assert list(meter.windows(b"\0" * 300)) == []
    assert list(meter.windows(b"\0" * 400)) == [(20, False), (340, False)]
    assert list(meter.windows(b"\0" * 259)) == []  # 319 bytes held, not a window yet
    assert list(meter.windows(b"\0" * 1)) == [(1, False)]


def test_the_same_audio_in_any_frame_sizes_gives_the_same_decisions() -> None:
    audio = _dsp.encode(
        np.concatenate([_tone(0.5, 0.3), np.zeros(8000, np.float32), _tone(0.3, 0.3)]),
        "pcm_s16le",
    )

    def decisions(frame: int) -> list[tuple[int, Decision]]:
        meter, d, out = LevelMeter("pcm_s16le", 160), TurnDetector(DEFAULT, 16000), []
        for i in range(0, len(audio), frame):
            for _, flag in meter.windows(audio[i : i + frame]):
                decision = d.push(flag)
                if decision is not None:
                    out.append((d.position, decision))
        return out

    whole = decisions(len(audio))
    assert whole == [
        (7, Decision.START),
        (75, Decision.PHRASE),
        (90, Decision.EAGER_END),
        (107, Decision.RESUME),
    ]
    assert decisions(3200) == decisions(37 * 2) == decisions(1) == whole
