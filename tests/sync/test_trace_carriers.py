"""Trace carriers ride in the sync messages (sans-IO): a traced local update's carrier goes
out in its Push and Gossip, the receiver applies it inside a span continuing it (made by
the span maker it was given), and what it forwards (relay, gossip) carries its own span's
carrier; untraced updates carry nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from novacron_core.codec import decode, encode
from novacron_core.machine import Ready
from novacron_core.observe.spans import Attributes
from novacron_core.sync.crdt import LWWRegister
from novacron_core.sync.engine import Mutate, SyncConfig, SyncNode
from novacron_core.sync.messages import Gossip, Push, trace_key
from novacron_core.sync.persist import MemoryDurable

PEERS = {"a": "east", "b": "west", "c": "west"}
TRACE = bytes([0]) + b"\x11" * 16 + b"\x22" * 8 + b"\x01"


class Recorder:
    """A span maker that records (name, parent, key) and gives each span a new carrier."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, bytes, object]] = []

    @contextmanager
    def span(self, name: str, parent: bytes, attributes: Attributes) -> Iterator[bytes]:
        self.spans.append((name, parent, attributes.get("novacron.key")))
        yield bytes([0]) + b"\x33" * 16 + len(self.spans).to_bytes(8, "big") + b"\x01"


def node(name: str, spans: Recorder, eager: bool = True) -> SyncNode:
    cfg = SyncConfig(eager=eager, interval=0.1)
    n = SyncNode(name, PEERS[name], PEERS, MemoryDurable(), cfg, seed=1, spans=spans)
    n.on_start(0.0)
    return n


def write(n: SyncNode, key: str, trace: bytes) -> Ready:
    ready = Ready()
    n.update(
        0.1, Mutate(key, LWWRegister, lambda r: r.assign(b"v", n.hlc.now(100)), trace=trace), ready
    )
    return ready


def test_a_traced_update_carries_its_context_and_the_relay_carries_the_receivers() -> None:
    ra, rb, rc = Recorder(), Recorder(), Recorder()
    a, b, c = node("a", ra), node("b", rb), node("c", rc)
    out = write(a, "vm/x@east", TRACE)
    pushes = [(dst, decode(encode(m), Push)) for dst, m in out.messages if isinstance(m, Push)]
    assert pushes  # over the codec, as the transport sends it
    (dst, push), *_ = pushes
    ((k, carrier),) = push.traces.items()
    assert carrier == TRACE
    assert k == trace_key(a.replica, 1)
    receiver, rec = (b, rb) if dst == "b" else (c, rc)
    relayed = receiver.on_message(0.2, "a", push)
    assert rec.spans == [("sync.apply", TRACE, "vm/x@east")]
    mine = receiver.traces.get(next(iter(receiver.buffer)))
    assert mine not in (b"", TRACE)  # the receiver's own span
    for _, m in relayed.messages:
        if isinstance(m, Push):
            assert list(m.traces.values()) == [mine]


def test_gossip_carries_traces_and_untraced_updates_carry_nothing() -> None:
    ra, rb = Recorder(), Recorder()
    a, b = node("a", ra, eager=False), node("b", rb, eager=False)
    write(a, "vm/plain@east", b"")
    write(a, "vm/traced@east", TRACE)
    ready = a.on_tick(1.0)
    gossips = [m for dst, m in ready.messages if isinstance(m, Gossip) and m.packed]
    assert gossips
    g = decode(encode(gossips[0]), Gossip)
    assert list(g.traces.values()) == [TRACE]  # only the traced one
    b.on_message(1.1, "a", g)
    assert rb.spans == [("sync.apply", TRACE, "vm/traced@east")]  # no span for the other
    assert b.store.value("vm/plain@east") == b"v"


def test_an_untraced_message_pays_one_byte() -> None:
    import msgpack

    from novacron_core.codec import to_wire

    plain = Gossip.of({"a~1": 1}, [], True)
    wire = to_wire(plain)
    assert wire[-1] == {}  # the traces field, last
    without = msgpack.packb(wire[:-1], use_bin_type=True)  # as a node without the field sends
    assert len(msgpack.packb(wire, use_bin_type=True)) - len(without) == 1
    assert decode(without, Gossip).traces == {}  # and such a message still decodes
