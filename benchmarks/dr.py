"""Backup and restore throughput of a region's group state, to a directory and to a real
MinIO server started here on loopback, beside a plain minio-py upload/download of the same
number of bytes in the same run.

The state: a KV store of 12 MB (4 KiB values, VM-record sized), written as a Raft snapshot
into a data dir through the node's own storage code (no node process: these are the backup
path's figures). Why 12 MB: a region's snapshot is one codec record and the codec refuses
records over 16 MiB, so a node cannot restart from a larger state today.

Backup = read the data dir's log, rebuild the state, encode, AES-GCM seal, SHA-256, store
(fsync'd on the filesystem). Restore = fetch, check, open, rebuild, write the new data dir
(fsync'd), read it back and verify its Merkle root. MB/s are of the state's value bytes.
The issue's targets on this machine: backup >= 150 MB/s, restore >= 250 MB/s (filesystem).
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import result
from novacron_core.consensus.interface import ConfigState
from novacron_core.consensus.kv import KVStore
from novacron_core.consensus.raft.messages import SnapshotMeta
from novacron_core.consensus.raft.storage import HardState, RaftLogFormat, SaveSnapshot
from novacron_core.dr import agent
from novacron_core.dr.repo import BackupRepo
from novacron_core.dr.restore import restore
from novacron_core.dr.targets import FileTarget, S3Target, Target
from novacron_core.runtime.storage import FileStorage

VALUE = 4096


def _data_dir(root: Path, mb: int) -> tuple[Path, int]:
    store = KVStore()
    n = mb * (1 << 20) // VALUE
    for i in range(n):
        store.data[f"vm/{i:08d}"] = os.urandom(VALUE)
    d = root / "node"
    fs = FileStorage(d / "raft", RaftLogFormat(), fsync=True)
    meta = SnapshotMeta(n, 1, ConfigState(("n1",)))
    fs.apply([SaveSnapshot(meta, store.snapshot()), HardState(1, None)])
    fs.close()
    return d, n


def _round(target: Target, key: bytes, ddir: Path, index: int, out: Path) -> tuple[float, float]:
    repo = BackupRepo(target, "bench", key)
    t0 = time.perf_counter()
    agent.create(repo, ddir, index, "full", time.time())
    t1 = time.perf_counter()
    restore(repo, out, {"n1": ("127.0.0.1:1", "127.0.0.1:2")}, index)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def run(quick: bool = False) -> dict[str, Any]:
    mb = 4 if quick else 12
    key = secrets.token_bytes(32)
    figures: dict[str, Any] = {}
    peers: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="novacron-bench-dr-") as tmp:
        root = Path(tmp)
        ddir, index = _data_dir(root, mb)
        b, r = _round(FileTarget(root / "pvc"), key, ddir, index, root / "restored-fs")
        figures["backup_fs_MBps"] = mb / b
        figures["restore_fs_MBps"] = mb / r
        from tests.dr.servers import find_minio, minio_server

        binary = find_minio()
        if binary is None:
            figures["s3"] = "skipped: MinIO not built (bash e2e/minio/build.sh)"
        else:
            with minio_server(root, binary) as m:
                s3 = S3Target("bench", "", m.endpoint, m.access, m.secret)
                b, r = _round(s3, key, ddir, index, root / "restored-s3")
                figures["backup_s3_MBps"] = mb / b
                figures["restore_s3_MBps"] = mb / r
                blob = os.urandom(mb << 20)
                t0 = time.perf_counter()
                s3.client.put_object("bench", "plain", io.BytesIO(blob), len(blob))
                t1 = time.perf_counter()
                resp = s3.client.get_object("bench", "plain")
                assert len(resp.read()) == len(blob)
                resp.close()
                resp.release_conn()
                t2 = time.perf_counter()
                peers["minio_py_put_MBps"] = mb / (t1 - t0)
                peers["minio_py_get_MBps"] = mb / (t2 - t1)
                ratios["backup_s3_vs_plain_put"] = (
                    figures["backup_s3_MBps"] / peers["minio_py_put_MBps"]
                )
                ratios["restore_s3_vs_plain_get"] = (
                    figures["restore_s3_MBps"] / peers["minio_py_get_MBps"]
                )
        shutil.rmtree(root / "pvc", ignore_errors=True)
    load = os.getloadavg()[0]
    return result(
        "dr", figures, peers, ratios, {"state_MB": mb, "value_bytes": VALUE, "load1": load}
    )
