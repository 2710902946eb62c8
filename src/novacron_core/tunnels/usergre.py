"""GRE (RFC 2784, with the RFC 2890 key) in userspace, for kernels without the ``ip_gre``
module (this machine's has none and cannot load modules).

``python -m novacron_core.tunnels.usergre NAME LOCAL REMOTE [KEY]`` (root, inside the network
namespace it serves) creates the TUN device NAME and carries IPv4 packets between it and a raw
IP socket of protocol 47: every packet read from NAME leaves as ``IP(LOCAL -> REMOTE) / GRE /
packet``, and every GRE packet from REMOTE (with the same key) is written to NAME. On the wire
it is ordinary GRE, so it interoperates with a kernel GRE tunnel on the other end. It prints
``ready`` once the device exists, and exits on SIGTERM/SIGINT; the device goes with it.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
GRE_PROTO = 47
ETH_P_IP = 0x0800
GRE_KEY_FLAG = 0x2000


def gre_header(key: int | None) -> bytes:
    if key is None:
        return struct.pack("!HH", 0, ETH_P_IP)
    return struct.pack("!HHI", GRE_KEY_FLAG, ETH_P_IP, key)


def parse_gre(datagram: bytes, key: int | None) -> bytes | None:
    """The inner IPv4 packet of a raw-socket datagram (outer IP header included), or None
    when it is not ours (other key, checksum/sequence flags we do not speak, not IPv4)."""
    if len(datagram) < 20:
        return None
    ihl = (datagram[0] & 0x0F) * 4
    gre = datagram[ihl:]
    if len(gre) < 4:
        return None
    flags, proto = struct.unpack("!HH", gre[:4])
    if proto != ETH_P_IP or flags & ~GRE_KEY_FLAG:
        return None
    off = 4
    if flags & GRE_KEY_FLAG:
        if len(gre) < 8 or key is None or struct.unpack("!I", gre[4:8])[0] != key:
            return None
        off = 8
    elif key is not None:
        return None
    return gre[off:]


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def serve(name: str, local: str, remote: str, key: int | None) -> None:
    tun = open_tun(name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, GRE_PROTO)
    sock.bind((local, 0))
    sock.setblocking(False)
    header = gre_header(key)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sel = selectors.DefaultSelector()
    sel.register(tun, selectors.EVENT_READ, "tun")
    sel.register(sock, selectors.EVENT_READ, "net")
    print("ready", flush=True)
    while not stop:
        for ev, _ in sel.select(timeout=0.5):
            try:
                if ev.data == "tun":
                    packet = os.read(tun, 65535)
                    if packet and packet[0] >> 4 == 4:
                        sock.sendto(header + packet, (remote, 0))
                else:
                    datagram, (src, _) = sock.recvfrom(65535)
                    inner = parse_gre(datagram, key) if src == remote else None
                    if inner:
                        os.write(tun, inner)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:  # e.g. no route yet, or the device is going away
                print(f"usergre {name}: {e}", file=sys.stderr, flush=True)
    sel.close()
    sock.close()
    os.close(tun)


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: python -m novacron_core.tunnels.usergre NAME LOCAL REMOTE [KEY]")
        return 2
    key = int(argv[3]) if len(argv) == 4 and argv[3] != "-" else None
    serve(argv[0], argv[1], argv[2], key)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
