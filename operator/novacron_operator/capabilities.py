"""What the ``novacron`` CLI can run: the operator deploys a component only when the
subcommand its pods start exists.

``novacron agent`` and ``novacron gateway`` have not landed yet (their issues add them), so
their DaemonSet and Deployment/HPA/Service are not deployed, and their CRD fields are left
out of the generated CRDs (an object that sets one is refused as an unknown field). The
builders stay: once a command lands, the operator deploys it and ``make crds`` brings its
fields back, with no change here.
"""

from __future__ import annotations

import functools

# component -> the ``novacron`` subcommand its pods run
COMMANDS = {"node": "node", "agent": "agent", "gateway": "gateway"}

# Components whose rendered workload matches what their command needs (flags, config files,
# ports, mounts). ``novacron agent`` and ``novacron gateway`` now exist, but the builders
# still render the placeholder pods written before them (no topology mount, ports the
# commands do not serve): they stay undeployed until the builders are brought in line
# (docs/gateway.md and docs/routing.md list what each needs).
RENDERED = frozenset({"node"})


@functools.cache
def cli_commands() -> frozenset[str]:
    """The subcommands of ``novacron_core.cli.main`` (imported late: the CLI imports
    ``novacron_operator.render``, which imports the builders that call this)."""
    from novacron_core.cli import main

    return frozenset(main.commands)


def available(component: str) -> bool:
    return component in RENDERED and COMMANDS[component] in cli_commands()
