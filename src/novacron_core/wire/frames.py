"""The wire client protocol's frames (sans-IO): what a client and a node exchange over one
long-lived TCP connection beside the HTTP API.

A frame is a 4-byte big-endian length and that many bytes of msgpack. A connection carries
any number of requests without waiting for answers (pipelining); each request names an id
the client chose, and its reply carries the same id, in whatever order the group answers.

Request: ``[id, op, key, value, expected, client, seq, deadline_ms]``

- ``op``: ``put`` | ``get`` | ``delete`` | ``cas`` (the HTTP API's ``/v1/kv`` and
  ``/v1/cas`` operations; ``cas`` swaps ``value`` in when the key holds ``expected``, nil
  meaning absent).
- ``client``/``seq``: a session for exactly-once, as ``X-Client-Id``/``X-Request-Seq`` over
  HTTP: a write re-sent with the same pair after an unknown outcome returns the first
  result instead of applying twice. The store remembers one seq per client id, so a client
  that pipelines uses one id per request in flight (``wire/client.py``'s session slots).
- ``deadline_ms``: how long the client waits (0: the node's request timeout). A request
  still queued when it passes is dropped unproposed (``not_applied``); one already
  proposed is answered ``outcome-unknown``.

Reply: ``[id, 0, ok, value]`` on success (``ok``: cas swapped / get found; ``value``: get's
value, cas's current value when not swapped, delete's old value), or ``[id, 1, problem]``:
the RFC 9457 problem the HTTP API would answer (``runtime/problems.py``: the same ``type``
names and the same ``outcome``: ``not_applied`` or ``unknown``). A follower does not proxy:
it answers ``unavailable`` with ``leader`` and ``leader_wire`` (where the leader's wire API
listens), and the client reconnects there.

A frame that is not a request gets a problem (``invalid-body``, naming what is wrong) with
id 0 when no id could be read, and the connection stays open; only a length beyond
:data:`MAX_FRAME` closes it (the stream cannot be re-synchronised).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

LEN = struct.Struct(">I")
MAX_VALUE = 4 << 20  # as the HTTP API's MAX_BODY
MAX_FRAME = MAX_VALUE * 2 + (64 << 10)  # a cas carries two values
MAX_KEY_CHARS = 1024
MAX_CLIENT_ID = 128
SEQ_LIMIT = 1 << 64
OPS = ("put", "get", "delete", "cas")
WRITES = ("put", "delete", "cas")
OK_REPLY, PROBLEM_REPLY = 0, 1
PROBLEM_BASE = "urn:novacron:problem:"


class FrameTooLarge(ValueError):
    """A length prefix beyond MAX_FRAME: the connection cannot continue."""


class BadRequest(ValueError):
    """A frame that is not a valid request; ``rid`` is its id when one could be read."""

    def __init__(self, rid: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.rid, self.detail, self.field = rid, detail, field


@dataclass(slots=True)
class Request:
    rid: int
    op: str
    key: str
    value: bytes | None = None
    expected: bytes | None = None
    client: str = ""
    seq: int = 0
    deadline_ms: int = 0

    def frame(self) -> bytes:
        body: bytes = msgpack.packb(
            [
                self.rid,
                self.op,
                self.key,
                self.value,
                self.expected,
                self.client,
                self.seq,
                self.deadline_ms,
            ]
        )
        return LEN.pack(len(body)) + body


def frame(obj: Any) -> bytes:
    body: bytes = msgpack.packb(obj)
    return LEN.pack(len(body)) + body


def ok_frame(rid: int, ok: bool, value: bytes | None) -> bytes:
    return frame([rid, OK_REPLY, ok, value])


def problem_frame(rid: int, problem: dict[str, Any]) -> bytes:
    return frame([rid, PROBLEM_REPLY, problem])


class FrameReader:
    """Splits a byte stream into frame bodies."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = LEN.unpack_from(buf, pos)
            if size > self.max_frame:
                raise FrameTooLarge(
                    f"frame of {size} bytes announced; at most {self.max_frame} are accepted"
                )
            if n - pos - 4 < size:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return out


def parse_request(body: bytes) -> Request:
    """The request a frame body holds; :class:`BadRequest` naming the field otherwise."""
    try:
        obj = msgpack.unpackb(body, raw=False)
    except Exception as e:  # msgpack raises several types on garbage
        raise BadRequest(0, f"the frame is not msgpack ({type(e).__name__})") from None
    if not isinstance(obj, list) or not obj:
        raise BadRequest(0, "a request is the array [id, op, key, value, expected, ...]")
    rid = obj[0]
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 < rid < SEQ_LIMIT:
        raise BadRequest(0, "id: a positive integer is required", "id")
    if len(obj) < 3 or len(obj) > 8:
        raise BadRequest(rid, "a request has 3 to 8 elements: [id, op, key, value, ...]")
    obj = obj + [None, None, "", 0, 0][len(obj) - 3 :]
    _, op, key, value, expected, client, seq, deadline = obj
    if op not in OPS:
        raise BadRequest(rid, f"op: one of {', '.join(OPS)} is required, not {op!r:.40}", "op")
    if not isinstance(key, str) or not key:
        raise BadRequest(rid, "key: a non-empty string is required", "key")
    if len(key) > MAX_KEY_CHARS:
        raise BadRequest(rid, f"key: at most {MAX_KEY_CHARS} characters", "key")
    for name, v in (("value", value), ("expected", expected)):
        if v is not None and not isinstance(v, bytes):
            raise BadRequest(rid, f"{name}: bytes or nil are required", name)
    if op == "put" and value is None:
        raise BadRequest(rid, "value: put requires a value (bytes)", "value")
    if not isinstance(client, str) or len(client) > MAX_CLIENT_ID:
        raise BadRequest(rid, f"client: a string of at most {MAX_CLIENT_ID} chars", "client")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < SEQ_LIMIT:
        raise BadRequest(rid, f"seq: an integer from 0 to {SEQ_LIMIT - 1} is required", "seq")
    if not isinstance(deadline, int) or isinstance(deadline, bool) or deadline < 0:
        raise BadRequest(rid, "deadline_ms: a non-negative integer is required", "deadline_ms")
    return Request(rid, op, key, value, expected, client, seq, deadline)


@dataclass(slots=True)
class Reply:
    rid: int
    ok: bool = True
    value: bytes | None = None
    problem: dict[str, Any] | None = None


def parse_reply(body: bytes) -> Reply:
    """A node's reply; ValueError when the frame is not one (the client drops the
    connection: its answers can no longer be matched)."""
    try:
        obj = msgpack.unpackb(body, raw=False)
    except Exception as e:
        raise ValueError(f"reply is not msgpack ({type(e).__name__})") from None
    if not isinstance(obj, list) or len(obj) < 3 or not isinstance(obj[0], int):
        raise ValueError(f"not a reply: {obj!r:.80}")
    if obj[1] == OK_REPLY and len(obj) >= 4:
        return Reply(obj[0], bool(obj[2]), obj[3] if isinstance(obj[3], bytes) else None)
    if obj[1] == PROBLEM_REPLY and isinstance(obj[2], dict):
        return Reply(obj[0], False, None, obj[2])
    raise ValueError(f"not a reply: {obj!r:.80}")
