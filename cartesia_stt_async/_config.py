"""One session's configuration: every option of ``websocket()``, validated once, before any I/O.

:class:`SessionOptions` is the typed keyword surface of ``client.stt.manual_finalize.websocket()``
and ``connect()``; :class:`SessionConfig` is the same list with its defaults, frozen and checked
in one place, then passed down (manager, connection, link, supervisor). A test keeps the two in
step.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Final, Literal, Self, TypedDict

from .errors import UsageError
from .protocol.audio import DEFAULT_FRAME_MS, AudioFormat
from .protocol.checks import check_catch_up, check_int, check_number, check_speed
from .protocol.commands import ConnectParams, check_header_value
from .protocol.session import FinalOrderOption
from .protocol.turns import TURNS_PATH, TurnSettings, check_turn_settings

__all__ = [
    "DEFAULT",
    "BufferPolicy",
    "Default",
    "ReconnectingEvent",
    "SessionConfig",
    "SessionOptions",
    "TurnSessionConfig",
    "TurnSessionOptions",
]


class Default(enum.Enum):
    """The type of :data:`DEFAULT`: "use the connection's own setting" (a per-call argument
    left out, where ``None`` is a value of its own, as ``speed=None``: unpaced)."""

    DEFAULT = 0


DEFAULT: Final = Default.DEFAULT

BufferPolicy = Literal["block", "drop_oldest", "raise"]
"""What ``send_audio`` does when ``max_buffered_ms`` of audio is already waiting: wait for room
(``block``), drop the oldest unsent audio (``drop_oldest``), or raise :class:`BufferFullError`."""

_POLICIES: Final = ("block", "drop_oldest", "raise")


@dataclass(frozen=True)
class ReconnectingEvent:
    """Passed to ``on_reconnecting`` before each reconnect attempt (as the official SDK does).

    Attributes:
        attempt: 1 for the first attempt after a failure, then 2, 3, ...
        max_attempts: ``max_retries``.
        delay: Seconds the connection waits before the attempt.
        close_code: The close code that ended the previous socket (1006 for a drop), or
            ``None`` when the previous attempt's handshake failed.
        extra_query: The extra query parameters the attempt will use.
        extra_headers: The extra headers the attempt will use.

    The callback may return ``{"abort": True}`` to give up, or replacement ``extra_query``
    and/or ``extra_headers`` (e.g. a fresh access token); it may be a coroutine function.
    """

    attempt: int
    max_attempts: int
    delay: float
    close_code: int | None
    extra_query: Mapping[str, object]
    extra_headers: Mapping[str, str]


class SessionOptions(TypedDict, total=False):
    """The optional keyword arguments of ``websocket()`` and ``connect()``.

    Attributes:
        language: ISO-639-1 code (server default ``en``).
        keyterm: Terms to boost, sent as repeated ``keyterm=`` query values.
        min_volume: ink-whisper only.
        max_silence_duration_secs: ink-whisper only.
        extra_query: More query parameters.
        extra_headers: More handshake headers (override ours).
        speed: Default pacing of ``send_audio`` and ``stream``: 1.0 real time (default),
            ``None`` unpaced.
        frame_ms: Frame length for ``send_audio`` (100 ms).
        max_buffered_ms: Audio the send queue holds before ``buffer_policy`` applies (2000).
        open_timeout: Seconds for the handshake (10; ``None``: no limit).
        close_timeout: Seconds to wait for ``done`` when leaving ``async with``, in total (10).
        late_final_grace: Seconds an utterance with no text waits after its ``flush_done`` for
            late final chunks, with ``final_order`` flush_first or auto (0.25).
        max_event_backlog: Events kept for ``async for`` when nobody iterates (10,000).
        max_message_size: Largest server message accepted, in bytes (1 MiB; ``None``: no
            limit).
        max_retries: Reconnect attempts in a row without progress before giving up (5; 0:
            never reconnect).
        initial_delay: Backoff before the first reconnect attempt, seconds (0.5).
        max_delay: Backoff cap, seconds (8); each delay is jittered down by up to 25 %.
        on_reconnecting: Called with a :class:`ReconnectingEvent` before each attempt.
        max_replay_ms: Unacknowledged audio kept for replay after a drop (120,000).
        buffer_policy: When ``max_buffered_ms`` is full: ``"block"`` (wait; default),
            ``"drop_oldest"`` or ``"raise"`` (:class:`~cartesia_stt_async.BufferFullError`).
        keepalive: Seconds without sending after which one frame of silence is sent, or
            ``None`` (off).
        log_transcripts: Log final transcript text at DEBUG (off: never logged).
        final_order: Whether the server sends a finalize's final chunks before its
            ``flush_done`` (``"finals_first"``, the current documentation's order and the
            default), after it (``"flush_first"``, older documentation), or to learn it from the
            events (``"auto"``). See docs/reliability.md for what each choice costs when the
            server does the other.
        max_event_backlog_bytes: Bytes of events kept for ``async for`` when nobody iterates
            (16 MiB; the oldest are dropped past it, as past ``max_event_backlog``).
        catch_up_speed: When a stall (network or event loop) held paced audio back, the
            backlog drains at up to this many times ``speed`` until the schedule is met, so
            latency returns to normal soon after (1.5: half a second of stall is made up in
            one second). 1.0 never sends faster than ``speed``.
    """

    language: str | None
    keyterm: Sequence[str] | None
    min_volume: float | None
    max_silence_duration_secs: float | None
    extra_query: Mapping[str, object] | None
    extra_headers: Mapping[str, str] | None
    speed: float | None
    frame_ms: int
    max_buffered_ms: int
    open_timeout: float | None
    close_timeout: float
    late_final_grace: float
    max_event_backlog: int
    max_message_size: int | None
    max_retries: int
    initial_delay: float
    max_delay: float
    on_reconnecting: Callable[[ReconnectingEvent], object] | None
    max_replay_ms: int
    buffer_policy: BufferPolicy
    keepalive: float | None
    log_transcripts: bool
    final_order: FinalOrderOption
    max_event_backlog_bytes: int
    catch_up_speed: float


@dataclass(frozen=True)
class SessionConfig:
    """Every option of one manual-finalize session with its default, validated when built.

    ``model``, ``encoding`` and ``sample_rate`` are the session's audio and model; the other
    fields are :class:`SessionOptions`, documented there.
    """

    model: str
    encoding: str
    sample_rate: int
    language: str | None = None
    keyterm: Sequence[str] | None = None
    min_volume: float | None = None
    max_silence_duration_secs: float | None = None
    extra_query: Mapping[str, object] | None = None
    extra_headers: Mapping[str, str] | None = None
    speed: float | None = 1.0
    frame_ms: int = DEFAULT_FRAME_MS
    max_buffered_ms: int = 2000
    open_timeout: float | None = 10.0
    close_timeout: float = 10.0
    late_final_grace: float = 0.25
    max_event_backlog: int = 10_000
    max_message_size: int | None = 1 << 20
    max_retries: int = 5
    initial_delay: float = 0.5
    max_delay: float = 8.0
    on_reconnecting: Callable[[ReconnectingEvent], object] | None = None
    max_replay_ms: int = 120_000
    buffer_policy: BufferPolicy = "block"
    keepalive: float | None = None
    log_transcripts: bool = False
    final_order: FinalOrderOption = "finals_first"
    max_event_backlog_bytes: int = 16 << 20
    catch_up_speed: float = 1.5
    # Derived, checked values.
    params: ConnectParams = field(init=False, repr=False)
    audio_format: AudioFormat = field(init=False, repr=False)

    def __post_init__(self) -> None:
        params = ConnectParams.build(
            model=self.model,
            encoding=self.encoding,
            sample_rate=self.sample_rate,
            language=self.language,
            keyterm=self.keyterm,
            min_volume=self.min_volume,
            max_silence_duration_secs=self.max_silence_duration_secs,
            extra_query=self.extra_query,
        )
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "audio_format", params.audio_format)
        object.__setattr__(self, "speed", check_speed(self.speed))
        if self.extra_headers is not None:
            if not isinstance(self.extra_headers, Mapping):
                raise UsageError(
                    f"extra_headers must be a mapping of str to str, "
                    f"got {type(self.extra_headers).__name__}"
                )
            for key, value in self.extra_headers.items():
                check_header_value(f"extra_headers[{key!r}]", key, value)
        check_int("frame_ms", self.frame_ms, low=1)
        self.audio_format.frame_bytes(self.frame_ms)
        check_int("max_buffered_ms", self.max_buffered_ms, low=1)
        check_number("open_timeout", self.open_timeout, low=0.0, strict=True, none=True)
        check_number("close_timeout", self.close_timeout, low=0.0)
        check_number("late_final_grace", self.late_final_grace, low=0.0)
        check_int("max_event_backlog", self.max_event_backlog, low=1)
        check_int("max_message_size", self.max_message_size, low=1, none=True)
        check_int("max_retries", self.max_retries, low=0)
        check_number("initial_delay", self.initial_delay, low=0.0)
        check_number("max_delay", self.max_delay, low=0.0)
        if self.on_reconnecting is not None and not callable(self.on_reconnecting):
            raise UsageError("on_reconnecting must be callable")
        check_int("max_replay_ms", self.max_replay_ms, low=0)
        if self.buffer_policy not in _POLICIES:
            raise UsageError(
                "buffer_policy must be 'block', 'drop_oldest' or 'raise', "
                f"got {self.buffer_policy!r}"
            )
        if self.keepalive is not None:
            check_number("keepalive", self.keepalive, low=0.0, strict=True)
        if self.final_order not in ("finals_first", "flush_first", "auto"):
            raise UsageError(
                "final_order must be 'finals_first', 'flush_first' or 'auto', "
                f"got {self.final_order!r}"
            )
        check_int("max_event_backlog_bytes", self.max_event_backlog_bytes, low=1)
        object.__setattr__(self, "catch_up_speed", check_catch_up(self.catch_up_speed))
        if not isinstance(self.log_transcripts, bool):
            raise UsageError(f"log_transcripts must be a bool, got {self.log_transcripts!r}")

    @classmethod
    def build(cls, model: str, encoding: str, sample_rate: int, **options: object) -> Self:
        """Build from ``websocket()``'s keyword arguments.

        Raises:
            UsageError: For an unknown option, or a value of the wrong type or range.
        """
        names = cls.option_names()
        unknown = sorted(set(options) - names)
        if unknown:
            raise UsageError(
                f"unknown option(s) {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(sorted(names))}"
            )
        return cls(model, encoding, sample_rate, **options)  # type: ignore[arg-type]

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """The keyword options of this endpoint's ``websocket()``."""
        return OPTION_NAMES

    @property
    def frame_bytes(self) -> int:
        """Bytes of one ``frame_ms`` frame."""
        return self.audio_format.frame_bytes(self.frame_ms)

    @property
    def buffer_bytes(self) -> int:
        """``max_buffered_ms`` in bytes (never less than one frame)."""
        fmt = self.audio_format
        return max(self.frame_bytes, fmt.bytes_per_second * self.max_buffered_ms // 1000)

    @property
    def max_replay_bytes(self) -> int:
        """``max_replay_ms`` in bytes."""
        return self.audio_format.bytes_per_second * self.max_replay_ms // 1000


OPTION_NAMES: Final = frozenset(
    f.name
    for f in fields(SessionConfig)
    if f.init and f.name not in ("model", "encoding", "sample_rate")
)


class TurnSessionOptions(TypedDict, total=False):
    """The optional keyword arguments of ``client.stt.auto_finalize.websocket()``.

    The turn settings (checked here, and again by ``configure()``: ranges, then the order
    start > eager end > end, a setting not given taking the server's default):

    Attributes:
        keyterm: Terms to boost (at most 100, 1200 characters in all); fixed per connection.
        turn_start_threshold: Likelihood above which a turn starts (0.5-0.9; server: 0.8).
        turn_eager_end_threshold: Below it, ``turn.eager_end`` fires (0.3-0.6; server: 0.4).
        turn_end_threshold: Below it, the turn ends (0.05-0.5; server: 0.2).
        turn_end_timeout_ms: Longest wait after speech stops before the turn ends anyway
            (640-11200; server: 5600).
        fill_silence: While a turn is open and you send nothing, send silence after
            max(2 frames, 0.5 s) and then in real time, so the server (which decides on audio
            time) can end the turn (default True; False: you keep the audio flowing).

    The other options mean what they mean for ``manual_finalize`` (see
    :class:`SessionOptions`): ``extra_query``, ``extra_headers``, ``speed``, ``frame_ms``,
    ``max_buffered_ms``, ``open_timeout``, ``close_timeout``, ``max_event_backlog``,
    ``max_message_size``, ``max_retries``, ``initial_delay``, ``max_delay``,
    ``on_reconnecting``, ``max_replay_ms``, ``buffer_policy``, ``keepalive``,
    ``log_transcripts``, ``max_event_backlog_bytes``, ``catch_up_speed``.
    """

    keyterm: Sequence[str] | None
    turn_start_threshold: float | None
    turn_eager_end_threshold: float | None
    turn_end_threshold: float | None
    turn_end_timeout_ms: float | None
    fill_silence: bool
    extra_query: Mapping[str, object] | None
    extra_headers: Mapping[str, str] | None
    speed: float | None
    frame_ms: int
    max_buffered_ms: int
    open_timeout: float | None
    close_timeout: float
    max_event_backlog: int
    max_message_size: int | None
    max_retries: int
    initial_delay: float
    max_delay: float
    on_reconnecting: Callable[[ReconnectingEvent], object] | None
    max_replay_ms: int
    buffer_policy: BufferPolicy
    keepalive: float | None
    log_transcripts: bool
    max_event_backlog_bytes: int
    catch_up_speed: float


# Options of the manual endpoint that the turn endpoint does not have.
_MANUAL_ONLY: Final = frozenset(
    {"language", "min_volume", "max_silence_duration_secs", "late_final_grace", "final_order"}
)


@dataclass(frozen=True)
class TurnSessionConfig(SessionConfig):
    """Every option of one turn-detection session, validated when built (see
    :class:`TurnSessionOptions`)."""

    turn_start_threshold: float | None = None
    turn_eager_end_threshold: float | None = None
    turn_end_threshold: float | None = None
    turn_end_timeout_ms: float | None = None
    fill_silence: bool = True
    settings: TurnSettings = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        settings = check_turn_settings(
            {
                "start_threshold": self.turn_start_threshold,
                "eager_end_threshold": self.turn_eager_end_threshold,
                "end_threshold": self.turn_end_threshold,
                "end_timeout_ms": self.turn_end_timeout_ms,
            }
        )
        object.__setattr__(self, "settings", settings)
        params = dataclasses.replace(
            self.params, endpoint_query=tuple(settings.query()), path=TURNS_PATH
        )
        object.__setattr__(self, "params", params)
        if not isinstance(self.fill_silence, bool):
            raise UsageError(f"fill_silence must be a bool, got {self.fill_silence!r}")

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """The keyword options of ``client.stt.auto_finalize.websocket()``."""
        return TURN_OPTION_NAMES


TURN_OPTION_NAMES: Final = frozenset(
    f.name
    for f in fields(TurnSessionConfig)
    if f.init and f.name not in ("model", "encoding", "sample_rate") and f.name not in _MANUAL_ONLY
)
