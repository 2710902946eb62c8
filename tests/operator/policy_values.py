"""Raw ``conflictPolicies`` values near every rule's boundary, valid and invalid, for the
tests that hold the CRD (schema, CEL, the operator's model) to what the nodes accept
(``novacron_core.conflict.policy.parse``)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from novacron_core.conflict import policy

ABSENT = object()
GOOD = list(policy.STRATEGIES)
STRATEGY = st.sampled_from([*GOOD, *GOOD, "random", "LWW", ""])
GLOBS = st.sampled_from(
    [
        *("spec.*", "labels.owner", "nics.*.address", "description", "[ab]?.x", "*", "a-b/c_d"),
        *(".spec", "spec.", "a..b", "", "spec cpus", "x" * 257, "x" * 256, "ü"),
    ]
)
PATHS = st.sampled_from(["spec.cpus", "spec.memory_mib", "labels.team", "spec.*", "", "a.", "x?"])
NAMES = st.sampled_from(["us-east1", "europe-west1", "api", "operator", "", "n" * 63, "n" * 64])


def _maybe(key: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), values.map(lambda v: {key: v}))


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out |= draw(_maybe("field", GLOBS))
    out |= draw(_maybe("kind", st.sampled_from(["vm", "*", "", "k" * 64])))
    out |= draw(_maybe("strategy", STRATEGY))
    out |= draw(_maybe("strategies", st.lists(STRATEGY, max_size=3)))
    return out


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    """One raw value; ``default`` is always one string (the CRD's shape)."""
    out: dict[str, Any] = {}
    out |= draw(_maybe("writes", st.sampled_from(["home", "multi", "both"])))
    out |= draw(_maybe("default", STRATEGY))
    out |= draw(_maybe("fallback", STRATEGY))
    out |= draw(_maybe("rules", st.lists(rules(), max_size=3)))
    groups = st.lists(st.lists(PATHS, max_size=3), max_size=2)
    out |= draw(_maybe("mustAgree", groups))
    ranked = st.fixed_dictionaries(
        {}, optional={k: st.lists(NAMES, max_size=2) for k in ("regions", "sources", "roles")}
    )
    out |= draw(_maybe("priority", ranked))
    return out


def node_accepts(raw: dict[str, Any]) -> bool:
    try:
        policy.parse(raw)
    except policy.PolicyError:
        return False
    return True
