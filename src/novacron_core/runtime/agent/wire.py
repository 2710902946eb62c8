"""The agents' probe datagrams: msgpack arrays, checked on the way in (a malformed or
oversized datagram is dropped and counted, never trusted)."""

from __future__ import annotations

from typing import Any

import msgpack

from novacron_core.routing.agent import LSA, LinkReport, Ping, Pong
from novacron_core.routing.vivaldi import Coordinate

VERSION = 1
MAX_DATAGRAM = 8192
PING, PONG = 1, 2


class WireError(ValueError):
    pass


def _coord(c: Coordinate | None) -> list[Any] | None:
    return None if c is None else [list(c.vec), c.error, c.adjustment, c.height]


def _uncoord(v: Any) -> Coordinate | None:
    if v is None:
        return None
    vec, err, adj, height = v
    return Coordinate(tuple(float(x) for x in vec), float(err), float(adj), float(height))


def encode(msg: Ping | Pong) -> bytes:
    lsas = [
        [
            lsa.origin,
            lsa.region,
            lsa.seq,
            [[r.peer, r.rtt_ms, r.loss, r.up, r.bandwidth_mbps] for r in lsa.links],
            _coord(lsa.coord),
        ]
        for lsa in msg.lsas
    ]
    kind = PING if isinstance(msg, Ping) else PONG
    out: bytes = msgpack.packb(
        [VERSION, kind, msg.seq, msg.sent, msg.src, msg.region, _coord(msg.coord), lsas]
    )
    return out


def decode(data: bytes) -> Ping | Pong:
    if len(data) > MAX_DATAGRAM:
        raise WireError(f"datagram of {len(data)} bytes")
    try:
        v, kind, seq, sent, src, region, coord, lsas = msgpack.unpackb(data, raw=False)
        if v != VERSION or kind not in (PING, PONG):
            raise WireError(f"version {v} kind {kind}")
        if not isinstance(src, str) or not isinstance(region, str) or not isinstance(seq, int):
            raise WireError("bad header")
        parsed = tuple(
            LSA(
                str(origin),
                str(lregion),
                int(lseq),
                tuple(
                    LinkReport(str(p), float(rtt), float(loss), bool(up), float(bw))
                    for p, rtt, loss, up, bw in links
                ),
                _uncoord(lcoord),
            )
            for origin, lregion, lseq, links, lcoord in lsas
        )
        for lsa in parsed:
            for r in lsa.links:
                if not (0 <= r.rtt_ms < 1e6 and 0 <= r.loss <= 1 and 0 < r.bandwidth_mbps < 1e9):
                    raise WireError(f"advert of {lsa.origin}: link to {r.peer} out of range")
        cls = Ping if kind == PING else Pong
        return cls(seq, float(sent), src, region, _uncoord(coord), parsed)
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise WireError(f"malformed: {e}") from None
