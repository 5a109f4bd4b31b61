"""The twin's turn detector for ``/stt/turns/websocket``: audio energy in, turn decisions out.

Pure and I/O-free (stdlib only, no clock): it sees audio only as samples, so every decision
falls on an exact sample count of the audio received, however fast the audio arrives.

Theory of operation:

* Audio is cut into windows of :data:`WINDOW_MS` (``sample_rate // 100`` samples). A window is
  *speech* when its RMS level is at least :data:`SPEECH_RMS` of full scale (-40 dBFS).
* Cartesia decides turns from a likelihood compared with three thresholds. The twin has no
  model; it turns each threshold into a duration of audio with a fixed curve:

  - ``start_threshold``: a turn starts after an unbroken run of speech of
    ``ONSET_HALF_LIFE_MS * log2(1 / (1 - start))`` (0.8: 70 ms; 0.5: 30 ms; 0.9: 100 ms);
  - ``eager_end_threshold``: ``turn.eager_end`` after a pause of
    ``PAUSE_HALF_LIFE_MS * log2(1 / eager)`` (0.4: 400 ms; 0.3: 530 ms; 0.6: 230 ms);
  - ``end_threshold``: ``turn.end`` after a pause of ``PAUSE_HALF_LIFE_MS * log2(1 / end)``
    (0.2: 700 ms; 0.05: 1300 ms; 0.5: 300 ms), or after ``end_timeout_ms`` if shorter.

  Also, once per pause, a pause of :data:`PHRASE_MS` inside a speaking turn is a phrase
  boundary (:attr:`Decision.PHRASE`), where the twin's recognizer sends the text so far.

  That is, "the user is still speaking" is modelled as a likelihood that halves every
  :data:`PAUSE_HALF_LIFE_MS` of silence; a higher threshold means an earlier decision, as
  with Cartesia's. Durations are rounded up to whole windows.
* States: idle, speaking, eager-ended. In *speaking* any speech window resets the pause. In
  *eager-ended* the pause keeps counting; an unbroken onset run of speech (as for a start)
  resumes the turn (``turn.resume``), while shorter bursts do not.
* :meth:`TurnDetector.configure` takes new settings; they apply from the next window on.
"""

from __future__ import annotations

import array
import math
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ..protocol.audio import BYTES_PER_SAMPLE, g711_decode_table

__all__ = [
    "DEFAULT_SETTINGS",
    "ONSET_HALF_LIFE_MS",
    "PAUSE_HALF_LIFE_MS",
    "SPEECH_RMS",
    "WINDOW_MS",
    "Decision",
    "LevelMeter",
    "TurnDetector",
    "TurnSettings",
    "TurnState",
    "Windows",
]

WINDOW_MS: Final = 10
SPEECH_RMS: Final = 0.01
ONSET_HALF_LIFE_MS: Final = 30.0
PAUSE_HALF_LIFE_MS: Final = 300.0
PHRASE_MS: Final = 250.0


@dataclass(frozen=True)
class TurnSettings:
    """A connection's turn parameters, as Cartesia names them (defaults: Cartesia's)."""

    start_threshold: float = 0.8
    eager_end_threshold: float = 0.4
    end_threshold: float = 0.2
    end_timeout_ms: float = 5600.0


DEFAULT_SETTINGS: Final = TurnSettings()


@dataclass(frozen=True)
class Windows:
    """The detector's settings as whole windows of audio.

    Attributes:
        samples: Samples per window.
        onset: Speech windows in a row that start (or resume) a turn.
        eager: Pause windows before ``turn.eager_end``.
        end: Pause windows before ``turn.end`` (the end threshold or the timeout).
        phrase: Pause windows that end a phrase within a turn (:data:`PHRASE_MS`).
    """

    samples: int
    onset: int
    eager: int
    end: int
    phrase: int

    @classmethod
    def of(cls, settings: TurnSettings, sample_rate: int) -> Windows:
        """The windows of ``settings`` at ``sample_rate``."""

        def windows(ms: float) -> int:
            # round() first: 69.99999 ms must not become 8 windows through float noise.
            return max(1, math.ceil(round(ms / WINDOW_MS, 6)))

        onset = ONSET_HALF_LIFE_MS * math.log2(1 / (1 - settings.start_threshold))
        eager = PAUSE_HALF_LIFE_MS * math.log2(1 / settings.eager_end_threshold)
        end = PAUSE_HALF_LIFE_MS * math.log2(1 / settings.end_threshold)
        return cls(
            samples=max(1, sample_rate * WINDOW_MS // 1000),
            onset=windows(onset),
            eager=windows(eager),
            end=windows(min(end, settings.end_timeout_ms)),
            phrase=windows(PHRASE_MS),
        )


class Decision(Enum):
    """What the detector decided at a window."""

    START = "turn.start"
    PHRASE = "turn.update"
    EAGER_END = "turn.eager_end"
    RESUME = "turn.resume"
    END = "turn.end"


class TurnState(Enum):
    """Where a connection's turn stands."""

    IDLE = "idle"
    SPEAKING = "speaking"
    EAGER_ENDED = "eager_ended"


class TurnDetector:
    """The audio-time turn state machine; feed it one speech flag per window.

    Args:
        settings: The turn thresholds and timeout.
        sample_rate: The audio's sample rate (sets the window size).
    """

    def __init__(self, settings: TurnSettings, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.settings = settings
        self.windows = Windows.of(settings, sample_rate)
        self.state = TurnState.IDLE
        self.position = 0  # windows seen
        self._run = 0  # speech windows in a row
        self._pause = 0  # windows since the turn's last speech

    def configure(self, settings: TurnSettings) -> None:
        """Use ``settings`` from the next window on (an open turn keeps its pause so far)."""
        self.settings = settings
        self.windows = Windows.of(settings, self.sample_rate)

    def push(self, speech: bool) -> Decision | None:
        """Take the next window; return the decision it brings, if any."""
        self.position += 1
        self._run = self._run + 1 if speech else 0
        w = self.windows
        if self.state is TurnState.IDLE:
            if self._run >= w.onset:
                self._enter(TurnState.SPEAKING)
                return Decision.START
            return None
        if self.state is TurnState.SPEAKING and speech:
            self._pause = 0
            return None
        if self.state is TurnState.EAGER_ENDED and self._run >= w.onset:
            self._enter(TurnState.SPEAKING)
            return Decision.RESUME
        self._pause += 1
        if self._pause >= w.end:
            self._enter(TurnState.IDLE)
            return Decision.END
        if self.state is TurnState.SPEAKING and self._pause >= w.eager:
            self.state = TurnState.EAGER_ENDED
            return Decision.EAGER_END
        if self.state is TurnState.SPEAKING and self._pause == w.phrase:
            return Decision.PHRASE
        return None

    def close(self) -> Decision | None:
        """The audio ended: :attr:`Decision.END` if a turn is open."""
        if self.state is TurnState.IDLE:
            return None
        self._enter(TurnState.IDLE)
        return Decision.END

    def _enter(self, state: TurnState) -> None:
        self.state = state
        self._pause = 0
        self._run = 0


class LevelMeter:
    """Cuts a byte stream into windows and tells which are speech.

    Args:
        encoding: One of the six wire encodings.
        samples: Samples per window (:attr:`Windows.samples`).
        speech_rms: The RMS level (full scale 1.0) from which a window is speech.
    """

    def __init__(self, encoding: str, samples: int, speech_rms: float = SPEECH_RMS) -> None:
        self.encoding = encoding
        self.width = BYTES_PER_SAMPLE[encoding]
        self.window_bytes = samples * self.width
        self._rest = b""
        self._floor = speech_rms * speech_rms
        self._table = g711_decode_table(encoding) if encoding in ("pcm_mulaw", "pcm_alaw") else None

    def windows(self, data: bytes) -> Iterator[tuple[int, bool]]:
        """Each window that ``data`` completes: ``(offset in data of its end, is speech)``.

        A partial window at the end is kept for the next call.
        """
        buf = self._rest + data
        base = len(self._rest)  # buf offset minus data offset
        size = self.window_bytes
        whole = len(buf) - len(buf) % size
        self._rest = buf[whole:]
        for start in range(0, whole, size):
            yield start + size - base, self._power(buf[start : start + size]) >= self._floor

    def _power(self, chunk: bytes) -> float:
        """Mean square of one window's samples, full scale 1.0."""
        values: array.array[int] | array.array[float] | list[int] | tuple[float, ...]
        enc = self.encoding
        if self._table is not None:
            table = self._table
            values, scale = [table[b] for b in chunk], 32768.0
        elif enc == "pcm_f16le":
            values, scale = struct.unpack(f"<{len(chunk) // 2}e", chunk), 1.0
        else:
            values = array.array({"pcm_s16le": "h", "pcm_s32le": "i", "pcm_f32le": "f"}[enc])
            values.frombytes(chunk)
            if sys.byteorder == "big":
                values.byteswap()
            scale = {"pcm_s16le": 32768.0, "pcm_s32le": 2147483648.0}.get(enc, 1.0)
        if not values:
            return 0.0
        return sum(v * v for v in values) / len(values) / (scale * scale)
