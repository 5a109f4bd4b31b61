"""Client commands, the connect URL, its query and its headers (pure: stdlib only).

Commands are bare TEXT frames, not JSON (docs/protocol.md): ``finalize`` and ``close``; ``done``
is the legacy name of ``close``. The URL is derived as the official Python SDK does (§1.1):
``websocket_base_url`` verbatim if given, else the HTTP base URL with ``http`` → ``ws`` and
anything else → ``wss``, path prefix kept, ``/stt/websocket`` appended, base query merged first.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError, InvalidCommandError, UsageError
from .audio import AudioFormat

__all__ = [
    "COMMANDS",
    "DEFAULT_BASE_URL",
    "DEFAULT_CARTESIA_VERSION",
    "STT_PATH",
    "Command",
    "ConnectParams",
    "build_headers",
    "build_ws_url",
    "check_header_value",
    "normalize_command",
]

Command = Literal["finalize", "close"]
COMMANDS: Final[tuple[Command, ...]] = ("finalize", "close")
_LEGACY_ALIASES: Final = {"done": "close"}

DEFAULT_BASE_URL: Final = "https://api.cartesia.ai"
# The version the official SDKs 4.x send (Python 4.2.0, JS 4.2.0); overridable per client.
DEFAULT_CARTESIA_VERSION: Final = "2026-08-14"
STT_PATH: Final = "/stt/websocket"

MAX_KEYTERMS: Final = 100
MAX_KEYTERM_CHARS: Final = 1200


def normalize_command(command: object) -> Command:
    """Check a text command and return its canonical name.

    Args:
        command: What the caller wants to send; ``"done"`` is accepted as the legacy ``close``.

    Returns:
        ``"finalize"`` or ``"close"``.

    Raises:
        InvalidCommandError: For anything else, naming the value.
    """
    if not isinstance(command, str):
        raise InvalidCommandError(
            f"commands are the strings 'finalize' or 'close', got {type(command).__name__}"
        )
    name = _LEGACY_ALIASES.get(command, command)
    if name == "finalize":
        return "finalize"
    if name == "close":
        return "close"
    raise InvalidCommandError(
        f"unknown command {command!r}: the manual-finalize endpoint only takes 'finalize' "
        "and 'close' (audio goes through send_audio/send_raw as bytes)"
    )


def _finite(
    name: str, value: float | None, low: float, high: float | None, *, open_low: bool = False
) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    if value < low or (open_low and value == low) or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else (">" if open_low else ">=") + f" {low}"
        raise UsageError(f"{name} must be in {bound}, got {value!r}")
    return float(value)


def _extra_pairs(extra_query: Mapping[str, object] | None) -> tuple[tuple[str, str], ...]:
    """``extra_query`` as query pairs (a list value repeats its key; ``None`` values left out).

    Raises:
        UsageError: For a value that is not a mapping, or a key that is not a non-empty string.
    """
    if extra_query is not None and not isinstance(extra_query, Mapping):
        raise UsageError(f"extra_query must be a mapping, got {type(extra_query).__name__}")
    extra: list[tuple[str, str]] = []
    for key, value in (extra_query or {}).items():
        if not isinstance(key, str) or not key:
            raise UsageError(f"extra_query keys must be non-empty strings, got {key!r}")
        values = value if isinstance(value, list | tuple) else [value]
        extra.extend((key, _query_value(v)) for v in values if v is not None)
    return tuple(extra)


@dataclass(frozen=True, slots=True)
class ConnectParams:
    """The query parameters of one session, checked on the client before connecting.

    Args:
        model: Model id, e.g. ``"ink-2"`` (any non-empty string; the server decides).
        encoding: One of the six encodings.
        sample_rate: Positive integer Hz.
        language: ISO-639-1 code or ``None`` (server default ``en``).
        keyterms: Terms to boost (at most 100, at most 1200 characters in all).
        min_volume: ink-whisper only; 0.0-1.0.
        max_silence_duration_secs: ink-whisper only; positive seconds.
        extra_query: Additional query pairs, appended last.
        endpoint_query: Pairs of another endpoint's own parameters (the turn endpoint's
            ``turn_*``), checked by their owner, written before ``extra_query``.
        path: The endpoint's path (``/stt/websocket``, or ``/stt/turns/websocket``).

    Raises:
        UsageError: When a value has the wrong type or range, naming it.
    """

    model: str
    encoding: str
    sample_rate: int
    language: str | None = None
    keyterms: tuple[str, ...] = ()
    min_volume: float | None = None
    max_silence_duration_secs: float | None = None
    extra_query: tuple[tuple[str, str], ...] = field(default=())
    endpoint_query: tuple[tuple[str, str], ...] = field(default=())
    path: str = STT_PATH

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise UsageError(f"model must be a non-empty string, got {self.model!r}")
        AudioFormat(self.encoding, self.sample_rate)  # validates both
        if self.language is not None and (not isinstance(self.language, str) or not self.language):
            raise UsageError(f"language must be a non-empty string, got {self.language!r}")
        if isinstance(self.keyterms, str | bytes):
            raise UsageError("keyterms must be a sequence of strings, not a single string")
        for term in self.keyterms:
            if not isinstance(term, str) or not term:
                raise UsageError(f"every keyterm must be a non-empty string, got {term!r}")
        if len(self.keyterms) > MAX_KEYTERMS:
            raise UsageError(f"at most {MAX_KEYTERMS} keyterms, got {len(self.keyterms)}")
        total = sum(len(t) for t in self.keyterms)
        if total > MAX_KEYTERM_CHARS:
            raise UsageError(f"keyterms total {total} characters; the limit is {MAX_KEYTERM_CHARS}")
        _finite("min_volume", self.min_volume, 0.0, 1.0)
        _finite(
            "max_silence_duration_secs", self.max_silence_duration_secs, 0.0, None, open_low=True
        )

    @classmethod
    def build(
        cls,
        *,
        model: str,
        encoding: str,
        sample_rate: int,
        language: str | None = None,
        keyterm: Sequence[str] | None = None,
        min_volume: float | None = None,
        max_silence_duration_secs: float | None = None,
        extra_query: Mapping[str, object] | None = None,
    ) -> ConnectParams:
        """Build from keyword arguments as the public API takes them (``keyterm`` a list)."""
        if isinstance(keyterm, str | bytes):
            raise UsageError("keyterm must be a list of strings, not a single string")
        extra = _extra_pairs(extra_query)
        return cls(
            model=model,
            encoding=encoding,
            sample_rate=sample_rate,
            language=language,
            keyterms=tuple(keyterm or ()),
            min_volume=min_volume,
            max_silence_duration_secs=max_silence_duration_secs,
            extra_query=extra,
        )

    def with_extra_query(self, extra_query: Mapping[str, object] | None) -> ConnectParams:
        """These parameters with another ``extra_query`` (a reconnect's, from
        ``on_reconnecting``), checked as :meth:`build` checks it."""
        return dataclasses.replace(self, extra_query=_extra_pairs(extra_query))

    @property
    def audio_format(self) -> AudioFormat:
        """The session's :class:`AudioFormat`."""
        return AudioFormat(self.encoding, self.sample_rate)

    def query(self) -> list[tuple[str, str]]:
        """The query pairs in wire order; keyterms as repeated ``keyterm=`` pairs."""
        pairs: list[tuple[str, str]] = [
            ("model", self.model),
            ("encoding", self.encoding),
            ("sample_rate", str(self.sample_rate)),
        ]
        if self.language is not None:
            pairs.append(("language", self.language))
        pairs.extend(("keyterm", t) for t in self.keyterms)
        if self.min_volume is not None:
            pairs.append(("min_volume", _query_value(self.min_volume)))
        if self.max_silence_duration_secs is not None:
            pairs.append(
                ("max_silence_duration_secs", _query_value(self.max_silence_duration_secs))
            )
        pairs.extend(self.endpoint_query)
        pairs.extend(self.extra_query)
        return pairs


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_SCHEMES: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def build_ws_url(
    query: Iterable[tuple[str, str]],
    *,
    base_url: str = DEFAULT_BASE_URL,
    websocket_base_url: str | None = None,
    path: str = STT_PATH,
) -> str:
    """Build the URL of a realtime endpoint (``/stt/websocket`` by default).

    Args:
        query: Query pairs, appended after any query of the base URL. Spaces encode as ``%20``.
        base_url: HTTP(S) base URL; ``http`` maps to ``ws`` and ``https`` to ``wss`` (a
            ``ws``/``wss`` base is used as is).
        websocket_base_url: A ``ws``/``wss`` base that wins over ``base_url`` when given.
        path: The endpoint's path, appended to the base's.

    Returns:
        The full URL.

    Raises:
        ConfigurationError: If the base URL cannot work: another scheme (``ftp://``), no host,
            a malformed host or an out-of-range port. The URL itself is not repeated (it may
            hold a secret).
    """
    if websocket_base_url is not None:
        what, base = "websocket_base_url", websocket_base_url
        allowed: tuple[str, ...] = ("ws", "wss")
    else:
        what, base = "base_url", base_url
        allowed = tuple(_SCHEMES)
    if not isinstance(base, str):
        raise ConfigurationError(f"{what} must be a string, got {type(base).__name__}")
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ConfigurationError(f"{what} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in allowed and (scheme or websocket_base_url is not None):
        raise ConfigurationError(
            f"{what} must start with {' or '.join(s + '://' for s in allowed)}, "
            f"got scheme {scheme!r}"
        )
    if not parts.hostname:
        raise ConfigurationError(f"{what} has no host; expected e.g. https://api.cartesia.ai")
    path = parts.path.rstrip("/") + path
    pairs = parse_qsl(parts.query, keep_blank_values=True) + list(query)
    return urlunsplit((_SCHEMES[scheme], parts.netloc, path, urlencode(pairs, quote_via=quote), ""))


def build_headers(
    *,
    api_key: str,
    cartesia_version: str,
    user_agent: str,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Handshake headers: ``Authorization: Bearer``, ``cartesia-version``, ``User-Agent``.

    ``extra_headers`` are merged last and may override any of them.
    """
    headers = {
        "Authorization": f"Bearer {api_key}",
        "cartesia-version": cartesia_version,
        "User-Agent": user_agent,
    }
    lower = {k.lower(): k for k in headers}
    for key, value in (extra_headers or {}).items():
        headers.pop(lower.get(key.lower(), key), None)
        headers[key] = value
    return headers


def check_header_value(what: str, name: object, value: object) -> None:
    """Check one header name and value; never echo the value (it may be a secret).

    Raises:
        UsageError: For a non-string, an empty name, or a line break or NUL anywhere (a CR or
            LF would inject another header into the handshake).
    """
    if not isinstance(name, str) or not name or any(c in name for c in "\r\n\0: "):
        raise UsageError(f"{what}: a header name must be a non-empty token, got {name!r}")
    if not isinstance(value, str):
        raise UsageError(f"{what} must be a string, got {type(value).__name__}")
    if any(c in value for c in "\r\n\0"):
        raise UsageError(f"{what} contains a line break or NUL character (value not shown)")
