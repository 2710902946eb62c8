"""Conflict policies: which strategies decide which fields (pydantic models, sans-IO).

They come from ``DWCPFederation.spec.conflictPolicies`` (the operator renders it into the
federation file's ``conflictPolicies``; a node applies a changed one without a restart)::

    writes: home | multi          # where writes are accepted (per VM: label novacron.io/writes)
    default: merge                # strategy, or an ordered list, when no rule matches
    fallback: lww                 # tried last whenever every listed strategy declined
    rules:                        # first match wins: record kind and field-path glob
      - {field: "spec.*", strategy: lww}
      - {field: "labels.owner", kind: vm, strategies: [priority, vote, manual]}
    mustAgree: [["spec.cpus", "spec.memory_mib"]]   # decided together (semantic conflicts)
    priority: {regions: [us-east1, ...], sources: [...], roles: [...]}

Strategies: ``lww``, ``siblings``, ``text``, ``merge`` (semantic), ``rollback``, ``manual``,
``priority``, ``vote`` (see :mod:`.strategies`). Field paths are dotted (``spec.cpus``,
``labels.team``, ``nics.eth0.address``); in a glob ``*`` matches any characters, dots
included. Built-in rules for the VM's lifecycle, placement and NIC addresses (the VM rules:
lifecycle precedence, the earlier placement, the earlier lease) come after the user's rules
and before ``default``, so a user rule for those paths overrides them.

An invalid policy is refused with an error naming the path (``conflictPolicies.rules.1.
strategy: Input should be 'lww', ...``), by the node when it reads the federation file, and
by the API server (CEL and the enum) before that.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Strategy = Literal["lww", "siblings", "text", "merge", "rollback", "manual", "priority", "vote"]
STRATEGIES: tuple[str, ...] = (
    "lww",
    "siblings",
    "text",
    "merge",
    "rollback",
    "manual",
    "priority",
    "vote",
)
WritesMode = Literal["home", "multi"]
# The bounds and patterns below are also the CRD's (operator/novacron_operator/models.py
# builds DWCPFederation.spec.conflictPolicies from them), so the API server refuses what a
# node would. They are RE2- and JSON-Schema-safe (no lookaround): a glob is dotted names
# of these characters, no empty name (no leading, trailing or doubled dot).
FIELD_GLOB = r"^[A-Za-z0-9_*?\[\]/-]+(\.[A-Za-z0-9_*?\[\]/-]+)*$"
FIELD_PATH = r"^[A-Za-z0-9_\[\]/-]+(\.[A-Za-z0-9_\[\]/-]+)*$"  # a glob without * or ?
PATH_MAX, KIND_MAX, NAME_MAX = 256, 63, 63
MAX_RULES, MAX_CHAIN, MAX_GROUPS, MAX_GROUP, MAX_RANKED = 64, 16, 32, 16, 16
_GLOB = re.compile(FIELD_GLOB)
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]
FieldPath = Annotated[str, Field(min_length=1, max_length=PATH_MAX, pattern=FIELD_PATH)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, frozen=True)


GLOB_HELP = "a field path glob: dotted names, * ? [] allowed, e.g. spec.* or labels.team"


class Rule(_Model):
    field: str = Field(min_length=1, max_length=PATH_MAX)
    kind: str = Field(default="vm", min_length=1, max_length=KIND_MAX)
    strategy: Strategy | None = None
    strategies: tuple[Strategy, ...] = Field(default=(), max_length=MAX_CHAIN)

    @field_validator("field")
    @classmethod
    def _glob(cls, value: str) -> str:
        if not _GLOB.match(value):  # FIELD_GLOB, the CRD's pattern, with a friendlier message
            raise ValueError(f"{value!r} is not {GLOB_HELP}")
        return value

    @model_validator(mode="after")
    def _one_list(self) -> Rule:
        if self.strategy is None and not self.strategies:
            raise ValueError("a rule needs a strategy or a list of strategies")
        if self.strategy is not None and self.strategies:
            raise ValueError("give either strategy or strategies, not both")
        return self

    def chain(self) -> tuple[str, ...]:
        return self.strategies or ((self.strategy,) if self.strategy else ())


class Priority(_Model):
    regions: tuple[Name, ...] = Field(default=(), max_length=MAX_RANKED)
    sources: tuple[Name, ...] = Field(default=(), max_length=MAX_RANKED)
    roles: tuple[Name, ...] = Field(default=(), max_length=MAX_RANKED)


class Policies(_Model):
    writes: WritesMode = "home"
    default: Strategy | tuple[Strategy, ...] = "merge"
    fallback: Strategy = "lww"
    rules: tuple[Rule, ...] = Field(default=(), max_length=MAX_RULES)
    # each group: at least two field paths (no wildcards), decided together
    must_agree: tuple[
        Annotated[tuple[FieldPath, ...], Field(min_length=2, max_length=MAX_GROUP)], ...
    ] = Field(default=(), alias="mustAgree", max_length=MAX_GROUPS)
    priority: Priority = Field(default_factory=Priority)

    @model_validator(mode="after")
    def _priority_given(self) -> Policies:
        uses = any("priority" in r.chain() for r in self.rules) or "priority" in self.defaults()
        p = self.priority
        if uses and not (p.regions or p.sources or p.roles):
            raise ValueError(
                "priority: the priority strategy is used, so priority.regions, sources or "
                "roles must list who wins"
            )
        return self

    def defaults(self) -> tuple[str, ...]:
        return (self.default,) if isinstance(self.default, str) else tuple(self.default)

    def chain(self, kind: str, path: str) -> tuple[str, ...]:
        """The strategies tried for ``path`` of a ``kind`` record, in order (the fallback
        last, once)."""
        return _chain(self, kind, path)


# the VM rules (after the user's rules, before the default)
BUILTIN: tuple[Rule, ...] = (
    Rule(field="lifecycle", strategies=("merge",)),
    Rule(field="placement", strategies=("merge",)),
    Rule(field="nics.*.address", strategies=("merge",)),
    Rule(field="stats.*", strategies=("merge",)),
)


@lru_cache(maxsize=4096)
def _chain(p: Policies, kind: str, path: str) -> tuple[str, ...]:
    found: tuple[str, ...] | None = None
    for rule in (*p.rules, *BUILTIN):
        if (rule.kind == kind or rule.kind == "*") and fnmatch.fnmatchcase(path, rule.field):
            found = rule.chain()
            break
    chain = found if found is not None else p.defaults()
    if p.fallback not in chain:
        chain = (*chain, p.fallback)
    return chain


def group_of(p: Policies, path: str) -> tuple[str, ...] | None:
    for group in p.must_agree:
        if path in group:
            return group
    return None


class PolicyError(ValueError):
    """An invalid policy; the message names the path of the problem."""


def parse(raw: Mapping[str, Any] | None, where: str = "conflictPolicies") -> Policies:
    """Policies from the federation file's ``conflictPolicies`` (empty: the defaults)."""
    if not raw:
        return Policies()
    data = dict(raw)
    # the CRD keeps one strategy per rule (``strategy``) and may render ``rules: []``
    try:
        return Policies.model_validate(_lists_as_tuples(data))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join([where, *(str(x) for x in err['loc'])])}: {err['msg']}"
            for err in e.errors()
        )
        raise PolicyError(problems) from None


def _lists_as_tuples(v: Any) -> Any:
    # strict mode takes JSON arrays for tuples only as tuples
    if isinstance(v, list):
        return tuple(_lists_as_tuples(x) for x in v)
    if isinstance(v, dict):
        return {k: _lists_as_tuples(x) for k, x in v.items()}
    return v


def to_json(p: Policies) -> dict[str, Any]:
    return p.model_dump(mode="json", by_alias=True)
