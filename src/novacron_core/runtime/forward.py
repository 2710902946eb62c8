"""The HTTP client a follower forwards requests to its leader with, and what a failure of
that forward lets it tell its own client.

Two facts decide the answer. Was a connection to the leader ever made for this request?
If not (refused, unreachable, connect timeout) the leader never saw it: *not applied*, safe
to retry. If one was, the request may have reached the leader and been proposed, whatever
broke afterwards (a reset, the leader killed, a read timeout): *outcome unknown*.

aiohttp re-sends an idempotent request (PUT, DELETE) once on a fresh connection when the
first one breaks (RFC 9112 §9.3.1 allows it). For us that turns "the leader may have
applied it" into a second attempt whose connect error would then read "not sent". The
session below turns that re-send off with a client middleware: a break after connecting
surfaces as :class:`LostAfterConnect`, which aiohttp does not retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import ClientRequest, ClientResponse
from aiohttp.client_middlewares import ClientHandlerType


class LostAfterConnect(aiohttp.ClientError):
    """The connection broke after it was made: the leader may have the request."""


@dataclass
class Attempt:
    """One forward; pass as ``trace_request_ctx``. ``connected``: a connection to the leader
    was made (or reused) for it, so from then on its outcome can be unknown."""

    connected: bool = False


async def _connected(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
    attempt = ctx.trace_request_ctx
    if isinstance(attempt, Attempt):
        attempt.connected = True


async def _no_resend(req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
    try:
        return await handler(req)
    except aiohttp.ClientConnectorError:
        raise  # never connected: aiohttp does not retry these either
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as e:
        raise LostAfterConnect(f"{type(e).__name__}: {e}") from e


def forward_session(
    timeout_s: float,
    connect_timeout_s: float = 1.0,
    trace_configs: list[aiohttp.TraceConfig] | None = None,
) -> aiohttp.ClientSession:
    """A session for forwarding to the leader: no automatic re-send, connections marked on
    the :class:`Attempt` passed as ``trace_request_ctx``."""
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(_connected)
    trace.on_connection_reuseconn.append(_connected)
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=min(connect_timeout_s, timeout_s)
        ),
        middlewares=(_no_resend,),
        trace_configs=[trace, *(trace_configs or [])],
    )
