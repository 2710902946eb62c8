"""The Python client (CLI, demo) keeps the error contract: a write whose connection broke
after sending is reported as outcome unknown and never sent to the next node on its own; a
refused connection is reported as nothing applied; a problem body says which."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from novacron_core.cli import main
from novacron_core.client import ClientError, NodeClient, NodeUnreachable, OutcomeUnknown
from tests.runtime.procs import free_ports


class Node:
    """A stand-in node on a real socket: ``drop`` reads each request and hangs up without
    answering; otherwise it answers ``answer`` (status, body)."""

    def __init__(self, drop: bool, answer: tuple[int, dict[str, object]] = (200, {})) -> None:
        self.drop, self.answer = drop, answer
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests += 1
                if self.drop:
                    continue
                status, body = self.answer
                raw = json.dumps(body).encode()
                conn.sendall(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/problem+json\r\n"
                    f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n".encode()
                    + raw
                )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    made: list[Node] = []
    yield made
    for n in made:
        n.close()


def test_a_write_lost_after_sending_is_unknown_and_not_sent_to_the_next_node(
    nodes: list[Node],
) -> None:
    lost, healthy = Node(drop=True), Node(drop=False)
    nodes += [lost, healthy]
    client = NodeClient([lost.url, healthy.url], timeout=2.0)
    with pytest.raises(OutcomeUnknown, match="may or may not have been applied"):
        client.call("POST", "/v1/vms/a/power", {"state": "on"})
    assert (lost.requests, healthy.requests) == (1, 0)
    # a read has no effect: the next node is asked
    assert client.call("GET", "/v1/vms/a") == {}
    assert healthy.requests == 1


def test_a_refused_connection_means_nothing_was_applied() -> None:
    (port,) = free_ports(1)
    with pytest.raises(NodeUnreachable, match="nothing was applied"):
        NodeClient(f"http://127.0.0.1:{port}").call("POST", "/v1/vms", {})


def test_problems_say_whether_the_request_applied(nodes: list[Node]) -> None:
    for status, outcome, applied, says in [
        (503, "not_applied", False, "not applied: safe to retry"),
        (422, "not_applied", False, "not applied"),
        (504, "unknown", None, "outcome unknown"),
    ]:
        body = {"type": "urn:novacron:problem:x", "status": status, "detail": "why"}
        node = Node(drop=False, answer=(status, {**body, "outcome": outcome}))
        nodes.append(node)
        with pytest.raises(ClientError) as err:
            NodeClient(node.url).call("POST", "/v1/vms", {})
        assert err.value.applied is applied
        assert says in str(err.value)
        assert "why" in str(err.value)


def test_the_cli_says_the_outcome_is_unknown(nodes: list[Node]) -> None:
    lost = Node(drop=True)
    nodes.append(lost)
    res = CliRunner().invoke(main, ["vms", "power", "db-1", "on", "--url", lost.url])
    assert res.exit_code != 0
    assert "may or may not have been applied" in res.output
    assert "novacron vms get" in res.output
