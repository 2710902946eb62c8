"""Retention against a reference model of the documented policy: the newest restore point in
each hour of the last 7 days, day of 30, week of 90 and month of 365 is kept, and the newest
of all; pruning never takes what a kept point needs, nor the newest restorable index."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from novacron_core.dr import catalog, retention
from novacron_core.dr.catalog import FULL, INCR, LOG, ObjectMeta

NOW = 1_800_000_000.0
YEAR = 400 * 86400


def model_keep(points: dict[str, float], now: float) -> set[str]:
    """The policy, read literally: a point is kept when no newer point shares its bucket in a
    window that contains it (or it is the newest of all)."""

    def buckets(t: float) -> list[tuple[str, object, float]]:
        d = datetime.fromtimestamp(int(t), UTC)
        monday = d.date().toordinal() - d.weekday()
        return [
            ("h", (d.date(), d.hour), 7 * 86400),
            ("d", d.date(), 30 * 86400),
            ("w", monday, 90 * 86400),
            ("m", (d.year, d.month), 365 * 86400),
        ]

    def order(n: str) -> tuple[float, str]:
        return (points[n], n)

    kept = {max(points, key=order)} if points else set()
    for name, t in points.items():
        for rule, b, win in buckets(t):
            if not now - win < t <= now:
                continue
            rivals = [
                o
                for o, u in points.items()
                if now - win < u <= now and (rule, b, win) in buckets(u) and order(o) > order(name)
            ]
            if not rivals:
                kept.add(name)
    return kept


times = st.floats(min_value=NOW - YEAR, max_value=NOW, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4), times, max_size=40))
def test_keep_points_matches_the_model(points: dict[str, float]) -> None:
    assert retention.keep_points(points, NOW, retention.Policy()) == model_keep(points, NOW)


@settings(max_examples=100, deadline=None)
@given(st.lists(times, max_size=30))
def test_keeping_is_idempotent(ts: list[float]) -> None:
    points = {f"p{i}": t for i, t in enumerate(ts)}
    kept = retention.keep_points(points, NOW, retention.Policy())
    again = retention.keep_points({n: points[n] for n in kept}, NOW, retention.Policy())
    assert again == kept


def test_hourly_backups_thin_out_with_age() -> None:
    # one backup an hour for 400 days: 7*24 hourly + daily to 30 d + weekly to 90 d + monthly
    points = {f"p{h}": NOW - h * 3600 for h in range(400 * 24)}
    kept = retention.keep_points(points, NOW, retention.Policy())
    ages = sorted((NOW - points[n]) / 86400 for n in kept)
    assert sum(a < 7 for a in ages) == 7 * 24
    assert 7 * 24 + 23 <= len(kept) <= 7 * 24 + 23 + 9 + 13 + 2
    assert max(ages) < 366


def _obj(kind: str, first: int, last: int, t: float, parent: int = 0) -> ObjectMeta:
    return ObjectMeta(
        catalog.object_key("g", kind, first, last, parent),
        kind,
        first,
        last,
        1,
        t,
        "",
        0,
        False,
        parent,
    )


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_pruning_keeps_every_chain_it_keeps_and_the_newest_point(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    objs: list[ObjectMeta] = []
    index, t = 0, NOW - YEAR
    bases: list[int] = []
    for _ in range(n):
        index += data.draw(st.integers(1, 50))
        t += data.draw(st.floats(60, 40 * 86400))
        if t > NOW:
            break
        if bases and data.draw(st.booleans()):
            objs.append(_obj(INCR, index, index, t, parent=bases[-1]))
        else:
            objs.append(_obj(FULL, index, index, t))
        if bases:
            objs.append(_obj(LOG, bases[-1] + 1, index, t))
        bases.append(index)
    gone = retention.expired(objs, NOW, retention.Policy())
    left = [o for o in objs if o not in gone]
    assert catalog.window(left)[1] == catalog.window(objs)[1]
    chains = catalog.bases(left)
    for o in left:
        if o.kind == INCR:
            assert o.last in chains, f"kept {o.key} without its chain"
    kept_times = {str(i): c[-1].shipped_at for i, c in catalog.bases(objs).items()}
    keep = retention.keep_points(kept_times, NOW, retention.Policy())
    assert {str(i) for i in chains} >= keep
