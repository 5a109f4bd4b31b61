"""Deterministic, scriptable faults for the twin: for this package's tests and for yours.

Pass a :class:`Faults` plan to :func:`~cartesia_stt_async.twin.serve`::

    plan = Faults(
        schedule=[
            Fault("abort", connection=0, after_frames=3),  # drop the TCP connection (1006)
            Fault("close", connection=1, after_events=2, code=1011),
        ],
        refuse={2: 503},  # the third handshake is refused with HTTP 503
    )
    async with serve(engine=ScriptedEngine(...), faults=plan) as twin: ...

Connections are counted from 0 in the order the twin accepts them (``twin.sessions`` order);
handshakes (for ``refuse``) are counted from 0 in the order they arrive, refused ones included.
A fault fires once, at the first point where its trigger holds: after the connection has
received ``after_frames`` binary frames, or sent ``after_events`` events (counting every event
the twin sends on that connection, ``flush_done`` and ``done`` included). A fault with neither
trigger fires right after the handshake. Nothing here is random: a schedule replays exactly.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Fault", "FaultAction", "Faults"]

FaultAction = Literal[
    "abort", "close", "stop_reading", "malformed_json", "unknown_event", "binary", "error_event"
]
"""What a fault does.

* ``abort``: abort the TCP connection without a close frame (the client sees 1006).
* ``close``: close the WebSocket with ``code`` and ``reason``.
* ``stop_reading``: stop reading and answering (the client's sends back up; nothing arrives).
* ``malformed_json``: send a text frame that is not JSON, then go on.
* ``unknown_event``: send ``{"type": "twin_mystery", ...}``, then go on.
* ``binary``: send a binary frame (the protocol has none), then go on.
* ``error_event``: send an ``error`` event with ``code`` as its ``status_code``, then close 1011.
"""


@dataclass(frozen=True)
class Fault:
    """One fault on one connection (or on every connection).

    Attributes:
        action: See :data:`FaultAction`.
        connection: Index of the accepted connection, or ``None`` for every connection.
        after_frames: Fire after this many binary frames arrived on the connection.
        after_events: Fire after the twin sent this many events on the connection.
        code: Close code for ``close``; status code for ``error_event``.
        reason: Close reason for ``close``.
    """

    action: FaultAction
    connection: int | None = None
    after_frames: int | None = None
    after_events: int | None = None
    code: int = 1011
    reason: str = ""

    def __post_init__(self) -> None:
        if self.after_frames is not None and self.after_events is not None:
            raise ValueError("a fault has one trigger: after_frames or after_events")


@dataclass(frozen=True)
class Faults:
    """A fault plan for one twin.

    Attributes:
        schedule: The faults.
        refuse: Handshake index → HTTP status to refuse it with (401, 403, 429, 500, ...).
        flush_done_delay: Seconds to wait before each ``flush_done`` (the connection stalls).
        withhold_flush_done: Never send ``flush_done`` (finals are still sent): ``True`` on
            every connection, or a collection of connection indices.
        close_delay: Seconds to wait, after answering a client's ``close`` command, before
            closing the socket (a slow close).
    """

    schedule: Sequence[Fault] = ()
    refuse: Mapping[int, int] = field(default_factory=dict)
    flush_done_delay: float = 0.0
    withhold_flush_done: bool | Collection[int] = False
    close_delay: float = 0.0

    def withholds(self, index: int) -> bool:
        """Whether connection ``index`` never sends ``flush_done``."""
        if isinstance(self.withhold_flush_done, bool):
            return self.withhold_flush_done
        return index in self.withhold_flush_done

    def for_connection(self, index: int) -> list[Fault]:
        """The faults that apply to accepted connection ``index``, in schedule order."""
        return [f for f in self.schedule if f.connection is None or f.connection == index]
