"""Backup, point-in-time restore and quorum-loss recovery with real node processes (fsync'd
logs), the real `novacron` CLI and a real MinIO server on loopback; each runbook in
docs/runbooks/ is run command by command. The reference model is the map of acknowledged
writes: a restore at the commit index read right after a phase of writes must hold exactly
the model's state after that phase."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from novacron_core.cli import main
from novacron_core.consensus.kv import KVStore
from novacron_core.dr import agent, catalog
from novacron_core.dr.repo import BackupRepo
from novacron_core.dr.restore import restore
from novacron_core.dr.source import read_group
from novacron_core.dr.targets import FileTarget, S3Target
from tests.dr import runbook
from tests.dr.servers import Minio, minio_server
from tests.runtime.procs import ProcCluster, call, free_ports

pytestmark = pytest.mark.slow
BIN = str(Path(sys.executable).parent)
KEYS = [f"dr/{i}" for i in range(12)]


async def write_phase(
    http: aiohttp.ClientSession, url: str, model: dict[str, bytes], phase: int
) -> None:
    for i, key in enumerate(KEYS):
        if (i + phase) % 4 == 0 and key in model:
            status, _ = await call(http, "DELETE", f"{url}/v1/kv/{key}")
            model.pop(key)
        elif (i * phase) % 3 != 1:
            value = f"{key}@{phase}".encode()
            status, _ = await call(http, "PUT", f"{url}/v1/kv/{key}", data=value)
            model[key] = value
        else:
            continue
        assert status == 200


async def read_all(http: aiohttp.ClientSession, url: str) -> dict[str, bytes]:
    out = {}
    for key in KEYS:
        status, body = await call(http, "GET", f"{url}/v1/kv/{key}")
        assert status in (200, 404), (key, status, body)
        if status == 200:
            out[key] = body
    return out


def run(cmd: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", cmd], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def sh(cmd: str, env: dict[str, str], stdin: str = "") -> str:
    proc = run(cmd, env, stdin)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def cli(cmd: str, env: dict[str, str], stdin: str = "") -> tuple[int, str]:
    """A `novacron backup|dr` command of a runbook, in this process (the `novacron` entry
    point's own parser and commands; a new interpreter per command costs 3-15 s of imports on
    a loaded machine). Node processes stay real processes."""
    args = [re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], a) for a in shlex.split(cmd)]
    assert args[0] == "novacron", cmd
    keys = ("NOVACRON_S3_ENDPOINT", "NOVACRON_S3_ACCESS_KEY", "NOVACRON_S3_SECRET_KEY")
    res = CliRunner(env={k: env.get(k) for k in keys}).invoke(main, args[1:], input=stdin)
    return res.exit_code, res.output


def ok(cmd: str, env: dict[str, str], stdin: str = "") -> str:
    code, out = cli(cmd, env, stdin)
    assert code == 0, f"{cmd}\n{out}"
    return out


def spawn(cmd: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(["bash", "-c", f"exec {cmd}"], env=env, stdout=f, stderr=f)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def until(what: str, check: object, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            got = check()  # type: ignore[operator]
            if await got if asyncio.iscoroutine(got) else got:
                return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {what} within {limit_s}s")


async def status_of(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with http.get(url + "/v1/cluster") as r:
        return dict(await r.json())


def base_env(tmp: Path, minio: Minio | None) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    if minio is not None:
        env |= minio.env()
    return env


async def test_restore_runbook(tmp_path: Path) -> None:
    """`novacron backup ship` backs up a live 3-node group to MinIO continuously (a full,
    then the committed log; an incremental taken by hand in between); restores at the
    commit index after each phase of writes equal the model's state then (one through the
    runbook, as a new group that serves it and takes writes), and so does a restore by time
    from a directory target."""
    key_file = tmp_path / "key"
    key_file.write_text(secrets.token_hex(32))
    (tmp_path / "src").mkdir()
    c = ProcCluster(tmp_path / "src")
    c.start_all()
    ship: subprocess.Popen[bytes] | None = None
    with minio_server(tmp_path) as minio:
        env = base_env(tmp_path, minio) | {"TARGET": "s3://backups/eu", "KEY_FILE": str(key_file)}
        s3_repo = BackupRepo(
            S3Target("backups", "eu", minio.endpoint, minio.access, minio.secret),
            "region",
            bytes.fromhex(key_file.read_text()),
        )
        file_repo = BackupRepo(FileTarget(tmp_path / "pvc"), "region", None)
        points: list[tuple[int, float, dict[str, bytes]]] = []
        try:
            async with aiohttp.ClientSession() as http:
                await c.all_ready(http)
                lead = await c.leader(http)
                url, ddir = c.url(lead), c.root / lead
                ship = spawn(
                    f'novacron backup ship --target "$TARGET" --key-file "$KEY_FILE" --node {url} '
                    f"--data-dir {ddir} --every 0.2",
                    env,
                    tmp_path / "ship.log",
                )
                model: dict[str, bytes] = {}
                for phase in range(1, 5):
                    await write_phase(http, url, model, phase)
                    commit = agent.node_commit(url)
                    if phase == 3:  # an incremental by hand, beside the shipping
                        out = ok(
                            f'novacron backup create --target "$TARGET" --key-file "$KEY_FILE" '
                            f"--node {url} --data-dir {ddir} --kind incr",
                            env,
                        )
                        assert "incremental" in out, out
                    await until(
                        f"index {commit} shipped",
                        lambda n=commit: _shipped(s3_repo, n),  # type: ignore[misc]
                    )
                    kind = "full" if phase == 1 else "log"
                    agent.create(file_repo, ddir, commit, kind, time.time())
                    points.append((commit, time.time(), dict(model)))
            assert ship.poll() is None, (tmp_path / "ship.log").read_text()
            ship.terminate()
            assert ship.wait(10) == 0, "ship did not stop cleanly on SIGTERM"
        finally:
            if ship is not None and ship.poll() is None:
                stop(ship)
            c.stop_all()
        kinds = {o.kind for o in s3_repo.objects()}
        assert kinds == {"full", "incr", "log"}, kinds

        # a wrong key is refused, naming the problem
        bad_key = tmp_path / "bad"
        bad_key.write_text(secrets.token_hex(32))
        code, out = cli(
            f'novacron backup restore --target "$TARGET" --key-file {bad_key} '
            f"--data-dir {tmp_path / 'bad-dir'} --peers r1=127.0.0.1:1/127.0.0.1:2",
            env,
        )
        assert code == 1
        assert "wrong key" in out, out

        # every phase's commit index, rebuilt from MinIO, read back from the data dir
        for n, (index, _, expected) in enumerate(points):
            done = restore(
                s3_repo, tmp_path / f"lib-{n}", {"r1": ("127.0.0.1:1", "127.0.0.1:2")}, index
            )
            assert (done.index, stored_state(tmp_path / f"lib-{n}")) == (index, expected)

        cmds = runbook.commands("restore.md")
        assert [x.split()[:3] for x in cmds] == [
            ["novacron", "backup", "list"],
            ["novacron", "backup", "restore"],
            ["novacron", "node", "--node-id"],
            ["curl", "-fsS", '"$NEW_URL/v1/cluster"'],
        ]
        async with aiohttp.ClientSession() as http:
            for n, (index, _, expected) in enumerate([points[1]]):
                peer, port = free_ports(2)
                new_url = f"http://127.0.0.1:{port}"
                renv = env | {
                    "INDEX": str(index),
                    "NEW_NODE": "r1",
                    "NEW_DATA_DIR": str(tmp_path / f"restored-{n}"),
                    "NEW_PEERS": f"r1=127.0.0.1:{peer}/127.0.0.1:{port}",
                    "NEW_URL": new_url,
                }
                listing = ok(cmds[0], renv)
                assert f"restorable: index {points[0][0]}..{points[-1][0]}" in listing, listing
                out = ok(cmds[1], renv)
                assert f"restored index {index}" in out, out
                assert "verified" in out, out
                node = spawn(cmds[2], renv, tmp_path / f"restored-{n}.log")
                try:
                    await until("restored node up", lambda u=new_url: _leads(http, u))  # type: ignore[misc]
                    assert '"commit":' in sh(cmds[3], renv).replace(" ", "")
                    assert await read_all(http, new_url) == expected, f"index {index}"
                    status, _ = await call(http, "PUT", new_url + "/v1/kv/after", data=b"1")
                    assert status == 200
                finally:
                    stop(node)

        # point in time, from the directory target: what had been shipped by the 2nd phase
        _, when, expected = points[1]
        done = restore(
            file_repo, tmp_path / "pitr", {"r1": ("127.0.0.1:1", "127.0.0.1:2")}, at_time=when
        )
        assert (done.index, stored_state(tmp_path / "pitr")) == (points[1][0], expected)


def _shipped(repo: BackupRepo, index: int) -> bool:
    return catalog.window(repo.objects())[1] >= index


def stored_state(data_dir: Path) -> dict[str, bytes]:
    store = KVStore()
    store.restore(read_group(data_dir).snap_data)
    return store.data


async def _leads(http: aiohttp.ClientSession, url: str) -> bool:
    st = await status_of(http, url)
    return st.get("role") == "leader"


async def test_quorum_loss_runbook(tmp_path: Path) -> None:
    """Two of three members die for good; the runbook rebuilds the group from the survivor
    (stating the loss window first), it serves every acknowledged write and takes new ones,
    and a replacement joins, is promoted and serves too."""
    c = ProcCluster(tmp_path)
    c.start_all()
    env = base_env(tmp_path, None)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with aiohttp.ClientSession() as http:
            await c.all_ready(http)
            lead = await c.leader(http)
            model: dict[str, bytes] = {}
            await write_phase(http, c.url(lead), model, 1)
            survivor = next(n for n in c.names if n != lead)
            await until(
                "the survivor caught up",
                lambda: _applied_at_least(http, c.url(survivor), agent.node_commit(c.url(lead))),
            )
            last_known = agent.node_commit(c.url(lead))
            for n in c.names:
                if n != survivor:
                    c.kill9(n)
            c.stop_all()  # the survivor: stopped cleanly, as the runbook says

            cmds = runbook.commands("quorum-loss.md")
            assert [x.split()[:3] for x in cmds] == [
                ["novacron", "dr", "force-new-group"],
                ["novacron", "node", "--node-id"],
                ["novacron", "node", "--node-id"],
                ["curl", "-fsS", "-X"],
                ["curl", "-fsS", "-X"],
            ]
            new_peer, new_http = free_ports(2)
            env |= {
                "SURVIVOR": survivor,
                "SURVIVOR_DATA_DIR": str(c.root / survivor),
                "SURVIVOR_URL": c.url(survivor),
                "LAST_KNOWN_INDEX": str(last_known + 3),  # as if 3 more had been committed
                "PEERS": c.peers,
                "NEW_MEMBER": "n4",
                "NEW_MEMBER_DATA_DIR": str(tmp_path / "n4"),
                "NEW_PEER": f"127.0.0.1:{new_peer}",
                "NEW_HTTP": f"127.0.0.1:{new_http}",
            }
            # without confirmation nothing changes
            code, out = cli(cmds[0], env, stdin="n\n")
            assert code == 1
            assert "nothing was changed" in out
            assert not list((c.root / survivor).glob("raft.before-*"))
            out = ok(cmds[0], env, stdin="y\n")
            assert (
                f"3 committed entries are lost: indexes {last_known + 1}..{last_known + 3}" in out
            )
            assert "verified" in out

            procs.append(spawn(cmds[1], env, tmp_path / "survivor.log"))
            await until("the survivor leads", lambda: _leads(http, c.url(survivor)))
            assert await read_all(http, c.url(survivor)) == model
            await write_phase(http, c.url(survivor), model, 2)

            procs.append(spawn(cmds[2], env, tmp_path / "n4.log"))
            n4 = f"http://{env['NEW_HTTP']}"
            await until("n4 answers", lambda: _answers(http, n4))
            sh(cmds[3], env)
            await until(
                "n4 caught up",
                lambda: _applied_at_least(http, n4, agent.node_commit(c.url(survivor))),
            )
            sh(cmds[4], env)
            st = await status_of(http, c.url(survivor))
            assert st["voters"] == sorted([survivor, "n4"])
            await write_phase(http, c.url(survivor), model, 3)  # commits with both voters
            assert await read_all(http, n4) == model
    finally:
        for p in procs:
            stop(p)
        c.stop_all()


async def _applied_at_least(http: aiohttp.ClientSession, url: str, index: int) -> bool:
    st = await status_of(http, url)
    return int(st.get("applied", 0)) >= index  # type: ignore[call-overload]


async def _answers(http: aiohttp.ClientSession, url: str) -> bool:
    await status_of(http, url)
    return True
