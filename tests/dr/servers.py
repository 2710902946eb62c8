"""A real MinIO server on loopback (built from the Go module proxy by e2e/minio/build.sh) and
helpers for the DR tests."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.runtime.procs import free_ports, stop

ROOT = Path(__file__).resolve().parents[2]
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


def find_minio() -> str | None:
    cache = Path(os.environ.get("NOVACRON_CACHE", Path.home() / ".cache" / "novacron"))
    path = cache / "tools" / f"minio-{MINIO_VERSION}" / "minio"
    if path.is_file():
        return str(path)
    return shutil.which("minio")


def minio_binary() -> str:
    found = find_minio()
    if found:
        return found
    why = "minio not built: run `bash e2e/minio/build.sh` (once, ~2.5 min; .ci/run does)"
    if os.environ.get("NOVACRON_REQUIRE_TOOLS"):
        pytest.fail(why)
    pytest.skip(why)


@dataclass
class Minio:
    endpoint: str
    access: str
    secret: str

    def env(self) -> dict[str, str]:
        return {
            "NOVACRON_S3_ENDPOINT": self.endpoint,
            "NOVACRON_S3_ACCESS_KEY": self.access,
            "NOVACRON_S3_SECRET_KEY": self.secret,
        }


@contextmanager
def minio_server(root: Path, binary: str | None = None) -> Iterator[Minio]:
    binary = binary or minio_binary()
    port, console = free_ports(2)
    access, secret = "novacron-test", secrets.token_hex(16)
    env = {**os.environ, "MINIO_ROOT_USER": access, "MINIO_ROOT_PASSWORD": secret}
    env["MINIO_BROWSER"] = "off"
    data = root / "minio-data"
    data.mkdir()
    log = open(root / "minio.log", "wb")  # noqa: SIM115 (closed below)
    cmd = [binary, "server", str(data), "--address", f"127.0.0.1:{port}"]
    cmd += ["--console-address", f"127.0.0.1:{console}", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/minio/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"minio did not start: {(root / 'minio.log').read_text()}")
            time.sleep(0.1)
        yield Minio(endpoint, access, secret)
    finally:
        stop(proc)
        log.close()
