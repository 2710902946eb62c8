"""What the ``novacron`` CLI can run: the operator deploys a component only when the
subcommand its pods start exists, and its builders render what that command needs.

A component not in ``RENDERED`` (or whose command the CLI lacks) is not deployed and its
CRD fields are left out of the generated CRDs (an object that sets one is refused as an
unknown field): the operator never runs pods that crash-loop on an unknown command or a
flag their command does not take. ``tests/deploy/test_cli_commands.py`` parses every
rendered workload's arguments with the command's own click parser.
"""

from __future__ import annotations

import functools

# component -> the ``novacron`` subcommand its pods run
COMMANDS = {"node": "node", "agent": "agent", "gateway": "gateway"}

# Components whose rendered workload matches what their command needs (flags, config files,
# ports, mounts): docs/gateway.md and docs/routing.md ("for the operator") say what.
RENDERED = frozenset({"node", "agent", "gateway"})


@functools.cache
def cli_commands() -> frozenset[str]:
    """The subcommands of ``novacron_core.cli.main`` (imported late: the CLI imports
    ``novacron_operator.render``, which imports the builders that call this)."""
    from novacron_core.cli import commands

    return frozenset(commands())


def available(component: str) -> bool:
    return component in RENDERED and COMMANDS[component] in cli_commands()
