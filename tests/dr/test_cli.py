"""`novacron backup` / `novacron dr` say what went wrong and whether anything was written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from novacron_core.consensus.interface import ConfigState
from novacron_core.consensus.kv import KVStore
from novacron_core.dr import state
from novacron_core.dr.catalog import FULL
from novacron_core.dr.cli import backup_group, dr_group
from novacron_core.dr.repo import BackupRepo
from novacron_core.dr.targets import FileTarget


@pytest.fixture
def target(tmp_path: Path) -> str:
    repo = BackupRepo(FileTarget(tmp_path / "t"), "region", None)
    st = state.Rebuilt(KVStore(), 5, 1, ConfigState(("n1",)))
    st.store.data["k"] = b"v"
    repo.put(FULL, state.full_of(st), 5, 5, 1, 100.0, root=state.state_root(st.store))
    return f"file://{tmp_path / 't'}"


def test_list_shows_the_recoverability_window(target: str) -> None:
    res = CliRunner().invoke(backup_group, ["list", "--target", target])
    assert res.exit_code == 0, res.output
    assert "restorable: index 5..5" in res.output


def test_an_index_outside_the_window_is_refused_and_nothing_written(
    target: str, tmp_path: Path
) -> None:
    args = ["restore", "--target", target, "--data-dir", str(tmp_path / "d"), "--index", "9"]
    res = CliRunner().invoke(backup_group, [*args, "--peers", "r1=127.0.0.1:1/127.0.0.1:2"])
    assert res.exit_code == 1
    assert "index 9 is not restorable: the target covers 5..5" in res.output
    assert "nothing was written" in res.output
    assert not (tmp_path / "d").exists()


def test_restore_refuses_a_data_dir_that_holds_a_group(target: str, tmp_path: Path) -> None:
    peers = ["--peers", "r1=127.0.0.1:1/127.0.0.1:2"]
    args = ["restore", "--target", target, "--data-dir", str(tmp_path / "d"), *peers]
    first = CliRunner().invoke(backup_group, args)
    assert first.exit_code == 0, first.output
    assert "Merkle root" in first.output
    again = CliRunner().invoke(backup_group, args)
    assert again.exit_code == 1
    assert "not empty" in again.output


def test_bad_peers_and_s3_without_endpoint_name_the_flag(target: str, tmp_path: Path) -> None:
    args = ["restore", "--target", target, "--data-dir", str(tmp_path / "d")]
    res = CliRunner().invoke(backup_group, [*args, "--peers", "r1"])
    assert res.exit_code == 2
    assert "--peers" in res.output
    res = CliRunner(env={"NOVACRON_S3_ENDPOINT": ""}).invoke(
        backup_group, ["list", "--target", "s3://b/p"]
    )
    assert res.exit_code == 2
    assert "--s3-endpoint" in res.output


def test_create_with_an_unreachable_node_writes_nothing(target: str, tmp_path: Path) -> None:
    (tmp_path / "data" / "raft").mkdir(parents=True)
    args = ["create", "--target", target, "--node", "http://127.0.0.1:9", "--data-dir"]
    res = CliRunner().invoke(backup_group, [*args, str(tmp_path / "data")])
    assert res.exit_code == 1
    assert "cannot read the commit index" in res.output
    assert "nothing was written" in res.output


def test_a_wrong_key_file_is_a_usage_error(target: str, tmp_path: Path) -> None:
    (tmp_path / "key").write_text("short")
    res = CliRunner().invoke(
        backup_group, ["list", "--target", target, "--key-file", str(tmp_path / "key")]
    )
    assert res.exit_code == 2
    assert "32 bytes" in res.output


def test_force_new_group_on_a_dir_without_a_log_says_so(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        dr_group, ["force-new-group", "--data-dir", str(tmp_path), "--node-id", "n1", "--yes"]
    )
    assert res.exit_code == 1
    assert "no raft log here" in res.output
    assert "nothing was changed" in res.output


def test_restore_by_time_takes_iso_or_unix_seconds(target: str, tmp_path: Path) -> None:
    peers = ["--peers", "r1=127.0.0.1:1/127.0.0.1:2"]
    base = ["restore", "--target", target, *peers]
    early = CliRunner().invoke(
        backup_group, [*base, "--data-dir", str(tmp_path / "a"), "--time", "99"]
    )
    assert early.exit_code == 1
    assert "nothing restorable had been shipped by 99" in early.output
    at = ["--data-dir", str(tmp_path / "b"), "--time", "1970-01-01T00:01:40"]
    res = CliRunner().invoke(backup_group, [*base, *at])
    assert res.exit_code == 0, res.output
    assert "restored index 5" in res.output
    bad = CliRunner().invoke(
        backup_group, [*base, "--data-dir", str(tmp_path / "c"), "--time", "noon"]
    )
    assert bad.exit_code == 2
    assert "--time" in bad.output
