"""``DWCPFederation.spec.conflictPolicies``: the nodes' ``conflict.policy.Policies`` shape as
CRD schema, taking its enums and limits from the nodes' module so the two cannot drift."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from novacron_core.conflict import policy
from novacron_operator.schema import Spec, cel, rules, sub

PolicyName = Annotated[str, Field(min_length=1, max_length=policy.NAME_MAX)]
PolicyFieldPath = Annotated[
    str, Field(min_length=1, max_length=policy.PATH_MAX, pattern=policy.FIELD_PATH)
]


STRATEGIES_DOC = (
    "lww (greatest writer HLC, ties by region name), siblings (every value kept for a "
    "client), text (both character edits merged), merge (type-aware: counters add, lists by "
    "RGA, lifecycle by precedence deleted > stopped > ... > pending, the earlier placement and "
    "lease), rollback (the common ancestor's value), manual (parked in the conflicts feed), "
    "priority (the top-ranked region, source or role of priority), vote (a strict majority "
    "of the regions' copies)"
)


class ConflictRule(Spec):
    # (a comment, not a docstring: that would become the schema's description) the shape
    # and bounds of novacron_core.conflict.policy.Rule, which the nodes read

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "has(self.strategy) != (has(self.strategies) && size(self.strategies) > 0)",
                "a rule needs either strategy or strategies (an ordered list), not both",
            )
        )
    )
    field: str = Field(
        min_length=1,
        max_length=policy.PATH_MAX,
        pattern=policy.FIELD_GLOB,
        description="Field path glob of the record (dotted; * and ? match any characters, "
        "dots included), e.g. spec.*, labels.owner, nics.*.address. The first matching rule "
        "wins.",
    )
    kind: str = Field(
        default="vm",
        min_length=1,
        max_length=policy.KIND_MAX,
        description="Record kind the rule applies to (vm; * for every kind).",
    )
    strategy: policy.Strategy | None = Field(
        default=None, description=f"One strategy: {STRATEGIES_DOC}."
    )
    strategies: list[policy.Strategy] | None = Field(
        default=None,
        max_length=policy.MAX_CHAIN,
        description="Strategies tried in order until one decides (then fallback).",
    )


class ConflictPriority(Spec):
    regions: list[PolicyName] = Field(
        default_factory=list,
        max_length=policy.MAX_RANKED,
        description="Regions ranked for the priority strategy, first wins.",
    )
    sources: list[PolicyName] = Field(
        default_factory=list,
        max_length=policy.MAX_RANKED,
        description="Write sources ranked (api, resolve, rollback, upgrade), first wins.",
    )
    roles: list[PolicyName] = Field(
        default_factory=list,
        max_length=policy.MAX_RANKED,
        description="Writer roles ranked, first wins.",
    )


_USES_PRIORITY = (
    "self.default == 'priority' || (has(self.rules) && self.rules.exists(r, "
    "(has(r.strategy) && r.strategy == 'priority') || "
    "(has(r.strategies) && r.strategies.exists(s, s == 'priority'))))"
)
_RANKS_SOMEONE = " || ".join(
    f"(has(self.priority.{k}) && size(self.priority.{k}) > 0)"
    for k in ("regions", "sources", "roles")
)


class ConflictPolicies(Spec):
    """``DWCPFederation.spec.conflictPolicies``: rendered as is into topology.json, where
    every node reads it as ``novacron_core.conflict.policy.Policies`` and applies a change
    live. Everything this schema (and its CEL) accepts, that model accepts, and the other
    way round, except that ``default`` here is one strategy (a structural schema cannot say
    "a string or a list"; the node also takes a list from a hand-written file):
    tests/operator/test_conflict_policies_crd.py."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                f"!({_USES_PRIORITY}) || (has(self.priority) && ({_RANKS_SOMEONE}))",
                "the priority strategy is used, so priority.regions, sources or roles must "
                "list who wins",
                ".priority",
            )
        )
    )
    writes: policy.WritesMode = Field(
        default="home",
        description="Where VM writes are accepted: home (only the VM's home region; the "
        "others answer 421 with its address) or multi (every region; concurrent writes are "
        "merged by these policies). A VM's label novacron.io/writes overrides it.",
    )
    default: policy.Strategy = Field(
        default="merge", description=f"Strategy when no rule matches: {STRATEGIES_DOC}."
    )
    fallback: policy.Strategy = Field(
        default="lww", description="Tried last whenever every listed strategy declined."
    )
    rules: list[ConflictRule] = Field(
        default_factory=list,
        max_length=policy.MAX_RULES,
        description="Per-field strategies, first match wins; they come before the built-in "
        "VM rules (lifecycle, placement, nics.*.address, stats.*: merge).",
    )
    must_agree: list[
        Annotated[
            list[PolicyFieldPath],
            Field(min_length=2, max_length=policy.MAX_GROUP),
        ]
    ] = Field(
        default_factory=list,
        max_length=policy.MAX_GROUPS,
        description="Groups of field paths decided together, from one write (semantic "
        "conflicts), e.g. [spec.cpus, spec.memory_mib].",
    )
    priority: ConflictPriority = sub(ConflictPriority, "Who wins under the priority strategy.")

    @model_validator(mode="after")
    def _nodes_accept_it(self) -> ConflictPolicies:
        # the operator never renders what the nodes would refuse (the CEL above says the
        # same to the API server)
        try:
            policy.parse(self.model_dump(by_alias=True, exclude_none=True))
        except policy.PolicyError as e:
            raise ValueError(str(e)) from None
        return self
