"""Server events: exact decoding, tolerance, and clear protocol errors."""

from __future__ import annotations

import json

import msgspec
import pytest

from cartesia_stt_async.errors import ProtocolError
from cartesia_stt_async.protocol.events import (
    DoneEvent,
    ErrorEvent,
    FlushDoneEvent,
    TranscriptEvent,
    UnknownEvent,
    Word,
    encode_event,
    parse_event,
)


@pytest.mark.parametrize("as_bytes", [True, False])
@pytest.mark.parametrize(
    "text", [" leading", "trailing ", "", "  ", "naïve café", "日本語", "🙂 ok", "a\nb", '"q"']
)
def test_transcript_text_is_verbatim(text: str, as_bytes: bool) -> None:
    raw = json.dumps({"type": "transcript", "is_final": True, "text": text, "request_id": "r"})
    event = parse_event(raw.encode() if as_bytes else raw)
    assert isinstance(event, TranscriptEvent)
    assert event.text == text
    assert event.is_final is True
    assert event.type == "transcript"


def test_escaped_unicode() -> None:
    event = parse_event(b'{"type":"transcript","is_final":false,"text":"\\u00e9\\ud83d\\ude42"}')
    assert isinstance(event, TranscriptEvent)
    assert event.text == "é🙂"
    assert event.request_id == ""


def test_optional_fields_and_unknown_fields() -> None:
    event = parse_event(
        b'{"type":"transcript","is_final":true,"text":" hi","request_id":"r","duration":1.5,'
        b'"language":"en","brand_new":{"x":[1,2]},"words":null}'
    )
    assert isinstance(event, TranscriptEvent)
    assert (event.duration, event.language, event.words) == (1.5, "en", None)


def test_words_row_shape() -> None:
    event = parse_event(
        b'{"type":"transcript","is_final":true,"text":"a b","words":'
        b'[{"word":"a","start":0,"end":0.5},{"word":"b","start":0.5,"end":1}]}'
    )
    assert isinstance(event, TranscriptEvent)
    assert event.words == [Word("a", 0.0, 0.5), Word("b", 0.5, 1.0)]


def test_words_column_shape_of_the_sdk_types() -> None:
    event = parse_event(
        b'{"type":"transcript","is_final":true,"text":"a b","words":'
        b'[{"words":["a","b"],"start":[0,0.5],"end":[0.5,1]}]}'
    )
    assert isinstance(event, TranscriptEvent)
    assert event.words == [Word("a", 0.0, 0.5), Word("b", 0.5, 1.0)]


def test_words_absent_and_malformed() -> None:
    event = parse_event(b'{"type":"transcript","is_final":true,"text":""}')
    assert isinstance(event, TranscriptEvent)
    assert event.words is None
    odd = parse_event(b'{"type":"transcript","is_final":true,"text":"","words":[1,2]}')
    assert isinstance(odd, TranscriptEvent)
    with pytest.raises(ProtocolError, match="words"):
        _ = odd.words


def test_flush_done_done_error() -> None:
    assert parse_event('{"type":"flush_done","request_id":"r"}') == FlushDoneEvent("r")
    assert parse_event('{"type":"done"}') == DoneEvent("")
    err = parse_event(
        '{"type":"error","title":"Invalid model","message":"bad","error_code":"model_not_found",'
        '"status_code":400,"request_id":"r","doc_url":"u","done":true}'
    )
    assert isinstance(err, ErrorEvent)
    assert (err.type, err.status_code, err.title, err.message, err.error_code) == (
        "error",
        400,
        "Invalid model",
        "bad",
        "model_not_found",
    )


def test_error_code_falls_back_to_old_code_field() -> None:
    err = parse_event('{"type":"error","message":"Invalid model: x","code":400}')
    assert isinstance(err, ErrorEvent)
    assert err.status_code == 400
    both = parse_event('{"type":"error","message":"m","code":500,"status_code":429}')
    assert isinstance(both, ErrorEvent)
    assert both.status_code == 429


def test_unknown_type_is_surfaced() -> None:
    event = parse_event(b'{"type":"speech_started","request_id":"r","t":1}')
    assert isinstance(event, UnknownEvent)
    assert event.type == "speech_started"
    assert event.data == {"type": "speech_started", "request_id": "r", "t": 1}
    assert event.request_id == "r"


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"not json", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b'"transcript"', "not a JSON object"),
        (b"{}", "without a string 'type'"),
        (b'{"type": 5}', "without a string 'type'"),
        (b'{"type":"transcript","text":"x"}', "malformed 'transcript'"),
        (b'{"type":"transcript","is_final":true}', "malformed 'transcript'"),
        (b'{"type":"transcript","is_final":"yes","text":"x"}', "malformed 'transcript'"),
        (b'{"type":"flush_done","request_id":5}', "malformed 'flush_done'"),
        (b'{"type":"error","status_code":"400"}', "malformed 'error'"),
        (b'{"type":"done"', "not a JSON object"),
    ],
)
def test_malformed_messages_are_protocol_errors(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_event(raw)


def test_encode_round_trip() -> None:
    words = msgspec.Raw(b'[{"word":"x","start":0.0,"end":1.0}]')
    events: list[TranscriptEvent | FlushDoneEvent | DoneEvent | ErrorEvent] = [
        TranscriptEvent(is_final=True, text="", request_id="r", duration=0.5, words_raw=words),
        TranscriptEvent(is_final=False, text=" a"),
        FlushDoneEvent(request_id="r"),
        DoneEvent(request_id="r"),
        ErrorEvent(message="m", status_code=400, title="t", error_code="c", request_id="r"),
    ]
    for event in events:
        wire = encode_event(event)
        assert json.loads(wire)["type"] == event.type
        again = parse_event(wire)
        assert type(again) is type(event)
        if isinstance(event, TranscriptEvent):
            assert isinstance(again, TranscriptEvent)
            assert (again.text, again.is_final, again.words) == (
                event.text,
                event.is_final,
                event.words,
            )
        else:
            assert again == event
    # An empty delta still carries its text field on the wire.
    assert json.loads(encode_event(events[0]))["text"] == ""
