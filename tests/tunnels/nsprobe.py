"""Run inside a namespace (``ip netns exec NS python nsprobe.py ...``): the two ends of a
traffic check across a tunnel, and a capture of the underlay while it runs.

``echo ADDR PORT DEV SECONDS``: answer each UDP datagram on ADDR:PORT with the same bytes,
while capturing every frame on DEV (a raw AF_PACKET socket); prints JSON with what it saw.
``send ADDR PORT MARKER``: send MARKER until it comes back (up to 5 s); prints JSON.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003


def echo(addr: str, port: int, dev: str, seconds: float) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((addr, port))
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    cap.bind((dev, 0))
    print("ready", flush=True)
    frames: list[bytes] = []
    got: list[str] = []
    deadline = time.monotonic() + seconds
    stop_at = deadline
    while time.monotonic() < min(deadline, stop_at):
        r, _, _ = select.select([udp, cap], [], [], 0.05)
        for s in r:
            if s is cap:
                frames.append(cap.recv(65535))
            else:
                data, peer = udp.recvfrom(65535)
                got.append(data.decode(errors="replace"))
                udp.sendto(data, peer)
                stop_at = min(stop_at, time.monotonic() + 0.5)  # let the reply be captured
    ipv4 = [f[14:] for f in frames if len(f) > 34 and f[12:14] == b"\x08\x00"]
    out = {
        "received": got,
        "frames": len(frames),
        "proto": {},
        "udp_ports": {},
        "blobs": [f.hex() for f in frames],
    }
    for p in ipv4:
        proto = p[9]
        out["proto"][str(proto)] = out["proto"].get(str(proto), 0) + 1
        if proto == 17:
            ihl = (p[0] & 15) * 4
            dport = int.from_bytes(p[ihl + 2 : ihl + 4], "big")
            out["udp_ports"][str(dport)] = out["udp_ports"].get(str(dport), 0) + 1
    print(json.dumps(out), flush=True)


def send(addr: str, port: int, marker: str) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(0.1)
    start = time.monotonic()
    tries = 0
    while time.monotonic() - start < 5:
        tries += 1
        try:
            udp.sendto(marker.encode(), (addr, port))
            data, _ = udp.recvfrom(65535)
        except (TimeoutError, OSError):
            continue
        if data.decode() == marker:
            rtt = time.monotonic() - start
            print(json.dumps({"ok": True, "tries": tries, "seconds": rtt}), flush=True)
            return
    print(json.dumps({"ok": False, "tries": tries}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    else:
        send(sys.argv[2], int(sys.argv[3]), sys.argv[4])
