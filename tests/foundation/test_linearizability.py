"""The checker must accept known-linearizable histories and reject known-bad ones."""

from __future__ import annotations

from novacron_core.sim import History, KVModel, check_linearizable


def h(*ops: tuple[str, str, object, float, float, str, object]) -> History:
    """ops: (kind, key, value, call, ret, status, result)."""
    hist = History()
    for i, (kind, key, value, call, ret, status, result) in enumerate(ops):
        op = hist.invoke(i, kind, key, value, call)
        if status == "ok":
            hist.ok(op, result, ret)
        elif status == "fail":
            hist.fail(op, ret)
        else:
            hist.info(op, ret)
    return hist


def test_sequential_put_then_get_is_linearizable() -> None:
    assert check_linearizable(
        h(("put", "k", 1, 0, 1, "ok", None), ("get", "k", None, 2, 3, "ok", 1)), KVModel()
    )


def test_stale_read_after_completed_write_is_rejected() -> None:
    res = check_linearizable(
        h(
            ("put", "k", 1, 0, 1, "ok", None),
            ("put", "k", 2, 2, 3, "ok", None),
            ("get", "k", None, 4, 5, "ok", 1),
        )
    )
    assert not res
    assert res.key == "k"
    assert "no linearization" in res.explanation


def test_read_concurrent_with_write_may_see_either_value() -> None:
    for seen in (1, 2):
        assert check_linearizable(
            h(
                ("put", "k", 1, 0, 1, "ok", None),
                ("put", "k", 2, 2, 6, "ok", None),
                ("get", "k", None, 3, 4, "ok", seen),
            )
        )


def test_new_then_old_reads_are_rejected_even_when_both_overlap_the_write() -> None:
    # the write spans both reads, but once a read saw 2, a later read cannot see 1 again
    res = check_linearizable(
        h(
            ("put", "k", 1, 0, 1, "ok", None),
            ("put", "k", 2, 2, 10, "ok", None),
            ("get", "k", None, 3, 4, "ok", 2),
            ("get", "k", None, 5, 6, "ok", 1),
        )
    )
    assert not res


def test_read_of_a_never_written_value_is_rejected() -> None:
    assert not check_linearizable(h(("get", "k", None, 0, 1, "ok", 42)))


def test_unknown_write_may_take_effect_later_or_never() -> None:
    for seen in (None, 7):
        assert check_linearizable(
            h(("put", "k", 7, 0, 0, "info", None), ("get", "k", None, 5, 6, "ok", seen))
        )


def test_unknown_write_cannot_take_effect_twice() -> None:
    res = check_linearizable(
        h(
            ("put", "k", 7, 0, 0, "info", None),
            ("get", "k", None, 5, 6, "ok", 7),
            ("put", "k", 8, 7, 8, "ok", None),
            ("get", "k", None, 9, 10, "ok", 7),
        )
    )
    assert not res


def test_failed_write_must_not_be_visible() -> None:
    assert not check_linearizable(
        h(("put", "k", 7, 0, 1, "fail", None), ("get", "k", None, 2, 3, "ok", 7))
    )


def test_cas_results_must_agree_with_the_value() -> None:
    good = h(
        ("put", "k", 1, 0, 1, "ok", None),
        ("cas", "k", (1, 2), 2, 3, "ok", True),
        ("cas", "k", (1, 3), 4, 5, "ok", False),
        ("get", "k", None, 6, 7, "ok", 2),
    )
    assert check_linearizable(good)
    # two concurrent CAS from the same expected value cannot both succeed
    bad = h(
        ("put", "k", 1, 0, 1, "ok", None),
        ("cas", "k", (1, 2), 2, 5, "ok", True),
        ("cas", "k", (1, 3), 2, 5, "ok", True),
    )
    assert not check_linearizable(bad)


def test_keys_are_checked_independently_and_the_bad_key_is_named() -> None:
    res = check_linearizable(
        h(
            ("put", "a", 1, 0, 1, "ok", None),
            ("get", "a", None, 2, 3, "ok", 1),
            ("put", "b", 1, 0, 1, "ok", None),
            ("get", "b", None, 2, 3, "ok", None),
        )
    )
    assert not res
    assert res.key == "b"


def test_many_concurrent_ops_check_quickly() -> None:
    # 6 clients, 200 ops each on 4 keys, produced by a real sequential register: linearizable
    import random

    rng = random.Random(3)
    hist = History()
    values: dict[str, int] = {}
    t = 0.0
    for i in range(1200):
        key = rng.choice("wxyz")
        kind = rng.choice(["put", "get"])
        op = hist.invoke(i % 6, kind, key, i if kind == "put" else None, t)
        t += 1
        if kind == "put":
            values[key] = i
            hist.ok(op, None, t + rng.random() * 3)
        else:
            hist.ok(op, values.get(key), t + rng.random() * 3)
    assert check_linearizable(hist)
