"""The sans-I/O core of both realtime protocols (manual finalize, turn detection): public, and
pure.

Everything the client decides about the wire lives here, with no socket, event loop, thread or
clock (time is a parameter; ``tests/protocol/test_purity.py`` reads the imports and fails when
I/O creeps in). It is public for those who drive the protocol over an I/O layer of their own,
as websockets' and h11's cores are; :class:`~cartesia_stt_async.AsyncCartesia` is this core
plus the asyncio layer.

* :mod:`.session`: the state machine of one manual-finalize session: commands in, exact
  outgoing items out, server events in, completed utterances out; reconnect replay.
* :mod:`.turns`: the state machine of one turn-detection session (``/stt/turns/websocket``):
  turns, barge-in and eager-end signals, the turn settings and their checks; replay.
* :mod:`.sending`: the sending half both sessions share (frames, buffer policies, outbox,
  replay bound, keepalive).
* :mod:`.events`: the server events of both endpoints as msgspec structs,
  :func:`~.events.parse_event` and :func:`~.events.parse_turn_event`.
* :mod:`.transcript`: final deltas concatenated verbatim; utterances.
* :mod:`.audio`: encodings, exact frames, WAV headers, raw-audio checks.
* :mod:`.commands`: the connect URL, query and headers; the text commands.
* :mod:`.outbox`: the queue and the replay journal; connection counters.
* :mod:`.pacing` and :mod:`.clock`: the deadline schedule and backoff; one timer per loop.
* :mod:`.checks`: the numeric option checks every module uses.

Before 1.0, names here may change in a minor release (the changelog says so); the package's
top-level names are the stable surface.
"""
