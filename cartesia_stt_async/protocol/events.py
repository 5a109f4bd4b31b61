"""Server events as msgspec Structs: one tagged union on ``type``, one decoder built once.

Wire shapes are docs/protocol.md Every server message is a JSON object in a TEXT frame with a
``type`` field. Decoding is tolerant in the directions a newer server may move:

* unknown fields are ignored (msgspec's default), so new fields never break old clients;
* an unknown ``type`` becomes an :class:`UnknownEvent` carrying the whole object, never a crash;
* ``words`` is kept raw and decoded on first use, accepting the documented
  ``[{"word", "start", "end"}]`` shape and the SDK-typed column shape
  ``[{"words": [...], "start": [...], "end": [...]}]`` (docs/protocol.md);
* error status is read from ``status_code``, falling back to the older ``code``.

Malformed JSON, a non-object, or a known type with fields of the wrong type is a
:class:`~cartesia_stt_async.errors.ProtocolError`: the server broke the contract.

Each event class has a class attribute ``type`` so code written for the official SDK
(``if event.type == "transcript"``) works unchanged.

The turn-detection endpoint (``/stt/turns/websocket``) has a second union, :data:`TurnEvent`,
decoded by :func:`parse_turn_event` with the same tolerance: ``connected``, ``turn.start``,
``turn.update``, ``turn.eager_end``, ``turn.resume``, ``turn.end``; ``error`` and
:class:`UnknownEvent` are shared by both endpoints.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

import msgspec

from ..errors import ProtocolError

__all__ = [
    "ConnectedEvent",
    "DoneEvent",
    "ErrorEvent",
    "Event",
    "FlushDoneEvent",
    "ServerEvent",
    "TranscriptEvent",
    "TurnEagerEndEvent",
    "TurnEndEvent",
    "TurnEvent",
    "TurnResumeEvent",
    "TurnStartEvent",
    "TurnUpdateEvent",
    "UnknownEvent",
    "Word",
    "encode_event",
    "parse_event",
    "parse_turn_event",
]


class Word(msgspec.Struct, frozen=True, gc=False):
    """One recognized word with its timing in seconds."""

    word: str
    start: float
    end: float


_NO_WORDS: Final = msgspec.Raw(b"")
_NULL: Final = msgspec.Raw(b"null")


class _Base(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Common base of the known server events."""


class TranscriptEvent(_Base, tag="transcript"):
    """A transcript chunk. ``text`` is a DELTA: concatenate the final ones verbatim.

    Attributes:
        is_final: Whether ``text`` is final. Interim chunks may be revised; ignore them when
            assembling the transcript.
        text: The delta since the last final chunk; may be empty; keeps its own spaces.
        request_id: The session's id.
        duration: Seconds of audio behind this chunk, when sent.
        language: The language, when sent.
    """

    type: ClassVar[Literal["transcript"]] = "transcript"
    is_final: bool
    text: str  # required on the wire, even when empty
    request_id: str = ""
    duration: float | None = None
    language: str | None = None
    words_raw: msgspec.Raw = msgspec.field(default=_NO_WORDS, name="words")

    @property
    def words(self) -> list[Word] | None:
        """Word timings, decoded on first use; ``None`` when the server sent none."""
        raw = self.words_raw
        if not raw or raw == _NULL:
            return None
        return _decode_words(self.words_raw)


class FlushDoneEvent(_Base, tag="flush_done"):
    """Acknowledges one ``finalize``: the audio buffered before it has been processed."""

    type: ClassVar[Literal["flush_done"]] = "flush_done"
    request_id: str = ""


class DoneEvent(_Base, tag="done"):
    """Acknowledges ``close``: everything has been processed; the server closes next."""

    type: ClassVar[Literal["done"]] = "done"
    request_id: str = ""


class ErrorEvent(_Base, tag="error"):
    """The server reports an error; it usually closes the socket right after.

    Attributes:
        message: What went wrong.
        status_code: HTTP-like status (``code`` in older servers).
        title: Short title.
        error_code: Machine-readable code such as ``model_not_found``.
        request_id: The session's id.
        doc_url: Link to documentation, when sent.
    """

    type: ClassVar[Literal["error"]] = "error"
    message: str = ""
    status_code: int | None = None
    title: str | None = None
    error_code: str | None = None
    request_id: str | None = None
    doc_url: str | None = None
    code: int | None = None
    done: bool | None = None

    def __post_init__(self) -> None:
        if self.status_code is None and self.code is not None:
            self.status_code = self.code


class UnknownEvent(msgspec.Struct):
    """An event whose ``type`` this version does not know, surfaced untouched.

    Attributes:
        type: The ``type`` string the server sent.
        data: The whole decoded JSON object.
    """

    type: str
    data: dict[str, Any]

    @property
    def request_id(self) -> str | None:
        """The ``request_id`` field, if the event has a string one."""
        rid = self.data.get("request_id")
        return rid if isinstance(rid, str) else None


class ConnectedEvent(_Base, tag="connected"):
    """Turn endpoint: sent once when the socket opens (audio need not wait for it)."""

    type: ClassVar[Literal["connected"]] = "connected"
    request_id: str = ""


class TurnStartEvent(_Base, tag="turn.start"):
    """Turn endpoint: the user started speaking (fires fast: use it for barge-in)."""

    type: ClassVar[Literal["turn.start"]] = "turn.start"
    request_id: str = ""


class TurnUpdateEvent(_Base, tag="turn.update"):
    """Turn endpoint: the turn goes on. ``transcript`` is CUMULATIVE within the turn (never a
    delta); never join it into a session transcript."""

    type: ClassVar[Literal["turn.update"]] = "turn.update"
    transcript: str = ""
    request_id: str = ""


class TurnEagerEndEvent(_Base, tag="turn.eager_end"):
    """Turn endpoint (preview): the user may be done; a ``turn.resume`` may withdraw it."""

    type: ClassVar[Literal["turn.eager_end"]] = "turn.eager_end"
    transcript: str = ""
    request_id: str = ""


class TurnResumeEvent(_Base, tag="turn.resume"):
    """Turn endpoint (preview): the turn goes on; drop the last eager end."""

    type: ClassVar[Literal["turn.resume"]] = "turn.resume"
    request_id: str = ""


class TurnEndEvent(_Base, tag="turn.end"):
    """Turn endpoint: the turn is over; ``transcript`` is definitive (may be empty)."""

    type: ClassVar[Literal["turn.end"]] = "turn.end"
    transcript: str = ""
    request_id: str = ""


KnownEvent = TranscriptEvent | FlushDoneEvent | DoneEvent | ErrorEvent
Event = TranscriptEvent | FlushDoneEvent | DoneEvent | ErrorEvent | UnknownEvent
"""Any event :func:`parse_event` can return."""

_KnownTurnEvent = (
    ConnectedEvent
    | TurnStartEvent
    | TurnUpdateEvent
    | TurnEagerEndEvent
    | TurnResumeEvent
    | TurnEndEvent
    | ErrorEvent
)
TurnEvent = (
    ConnectedEvent
    | TurnStartEvent
    | TurnUpdateEvent
    | TurnEagerEndEvent
    | TurnResumeEvent
    | TurnEndEvent
    | ErrorEvent
    | UnknownEvent
)
"""Any event :func:`parse_turn_event` can return."""

ServerEvent = Event | TurnEvent
"""An event of either endpoint."""

_KNOWN_TYPES: Final = frozenset({"transcript", "flush_done", "done", "error"})
_KNOWN_TURN_TYPES: Final = frozenset(
    {"connected", "turn.start", "turn.update", "turn.eager_end", "turn.resume", "turn.end", "error"}
)
_decoder: Final = msgspec.json.Decoder(KnownEvent)
_turn_decoder: Final = msgspec.json.Decoder(_KnownTurnEvent)
_fallback_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_encoder: Final = msgspec.json.Encoder()


class _ColumnWords(msgspec.Struct):
    words: list[str]
    start: list[float]
    end: list[float]


_row_words_decoder: Final = msgspec.json.Decoder(list[Word])
_column_words_decoder: Final = msgspec.json.Decoder(list[_ColumnWords])


def _decode_words(raw: msgspec.Raw) -> list[Word]:
    try:
        return _row_words_decoder.decode(raw)
    except msgspec.ValidationError:
        pass
    try:
        columns = _column_words_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"transcript 'words' has an unknown shape: {exc}") from None
    out: list[Word] = []
    for col in columns:
        out.extend(Word(w, s, e) for w, s, e in zip(col.words, col.start, col.end, strict=False))
    return out


def _parse(data: bytes | str, decoder: msgspec.json.Decoder[Any], known: frozenset[str]) -> Any:
    """Decode with ``decoder``; an unknown ``type`` becomes an :class:`UnknownEvent`."""
    try:
        return decoder.decode(data)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"server sent a message that is not valid UTF-8: {exc}") from None
    except msgspec.DecodeError as first:
        # The fast path failed: either an unknown tag (fine) or a broken message (not fine).
        try:
            obj = _fallback_decoder.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise ProtocolError(
                f"server sent a message that is not a JSON object: {first}"
            ) from None
        kind = obj.get("type")
        if not isinstance(kind, str):
            raise ProtocolError("server sent a JSON object without a string 'type' field") from None
        if kind in known:
            raise ProtocolError(f"server sent a malformed {kind!r} event: {first}") from None
        return UnknownEvent(type=kind, data=obj)


def parse_event(data: bytes | str) -> Event:
    """Decode one server message of the manual-finalize endpoint.

    Args:
        data: The payload of one TEXT frame (``bytes`` or ``str``).

    Returns:
        A :class:`TranscriptEvent`, :class:`FlushDoneEvent`, :class:`DoneEvent`,
        :class:`ErrorEvent`, or :class:`UnknownEvent` for a type this version does not know.

    Raises:
        ProtocolError: If ``data`` is not a JSON object with a string ``type``, or a known
            event has fields of the wrong type.
    """
    try:  # the usual case decoded here, without a call to _parse
        event: Event = _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        event = _parse(data, _decoder, _KNOWN_TYPES)  # the same error, or an unknown type
    return event


def parse_turn_event(data: bytes | str) -> TurnEvent:
    """Decode one server message of the turn-detection endpoint (``/stt/turns/websocket``).

    Args:
        data: The payload of one TEXT frame (``bytes`` or ``str``).

    Returns:
        A :class:`ConnectedEvent`, :class:`TurnStartEvent`, :class:`TurnUpdateEvent`,
        :class:`TurnEagerEndEvent`, :class:`TurnResumeEvent`, :class:`TurnEndEvent`,
        :class:`ErrorEvent`, or :class:`UnknownEvent` for a type this version does not know
        (never fatal).

    Raises:
        ProtocolError: If ``data`` is not a JSON object with a string ``type``, or a known
            event has fields of the wrong type.
    """
    try:  # the usual case decoded here, without a call to _parse
        event: TurnEvent = _turn_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        event = _parse(data, _turn_decoder, _KNOWN_TURN_TYPES)  # the same error, or an unknown type
    return event


def encode_event(event: KnownEvent | _KnownTurnEvent) -> bytes:
    """Encode a known event to its JSON wire form (used by the twin server and tests)."""
    return _encoder.encode(event)
