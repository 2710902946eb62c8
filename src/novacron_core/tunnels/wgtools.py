"""WireGuard without ``wg``: the cross-platform UAPI (the text protocol wireguard-go serves on
``/var/run/wireguard/NAME.sock``), and finding the wireguard-go binary."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from novacron_core.tunnels.spec import TunnelSpec, b64_to_hex

UAPI_DIR = Path("/var/run/wireguard")
BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "e2e" / "wireguard" / "build.sh"


class WireGuardError(RuntimeError):
    pass


def find_wireguard_go(build: bool = False) -> str | None:
    """``$NOVACRON_WIREGUARD_GO``, else ``wireguard-go`` on PATH, else the one
    ``e2e/wireguard/build.sh`` caches in ~/.cache/novacron/tools (built now if
    ``build`` and the script is there)."""
    env = os.environ.get("NOVACRON_WIREGUARD_GO")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("wireguard-go")
    if found:
        return found
    cache = Path(os.environ.get("NOVACRON_CACHE", Path.home() / ".cache" / "novacron"))
    built = sorted((cache / "tools").glob("wireguard-go-*/wireguard-go"))
    if built:
        return str(built[-1])
    if build and BUILD_SCRIPT.exists():
        p = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
        )
        if p.returncode == 0 and p.stdout.strip():
            return p.stdout.strip().splitlines()[-1]
    return None


def uapi(name: str, request: str, timeout: float = 5.0) -> dict[str, list[str]]:
    """Send one UAPI request (``get=1`` or ``set=1`` lines) and return the answer's keys."""
    path = UAPI_DIR / f"{name}.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError as e:
            raise WireGuardError(f"{name}: no UAPI socket at {path}: {e}") from e
        s.sendall(request.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    out: dict[str, list[str]] = {}
    for line in buf.decode().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    errno = out.get("errno", ["0"])[-1]
    if errno != "0":
        raise WireGuardError(f"{name}: UAPI answered errno={errno}")
    return out


def set_request(spec: TunnelSpec) -> str:
    lines = [
        "set=1",
        f"private_key={b64_to_hex(spec.private_key)}",
        f"listen_port={spec.dst_port}",
        "replace_peers=true",
        f"public_key={b64_to_hex(spec.peer_public_key)}",
        f"endpoint={spec.remote}:{spec.peer_port}",
        f"persistent_keepalive_interval={spec.keepalive}",
        "replace_allowed_ips=true",
        *(f"allowed_ip={net}" for net in spec.routes),
    ]
    return "\n".join(lines) + "\n"


def matches(spec: TunnelSpec, state: dict[str, list[str]]) -> bool:
    """Whether a ``get=1`` answer is the configuration ``spec`` asks for."""

    def one(k: str) -> str:
        return state.get(k, [""])[0]

    return (
        one("private_key") == b64_to_hex(spec.private_key)
        and one("listen_port") == str(spec.dst_port)
        and state.get("public_key", []) == [b64_to_hex(spec.peer_public_key)]
        and one("endpoint") == f"{spec.remote}:{spec.peer_port}"
        and sorted(state.get("allowed_ip", [])) == sorted(spec.routes)
    )
