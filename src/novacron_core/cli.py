"""The ``novacron`` command. Subcommands live beside the code they drive and register here."""

from __future__ import annotations

import importlib
import platform

import click

from novacron_core import __version__

# (module, attribute) of click commands provided by other parts of the package. A part that
# is not importable (e.g. its optional dependency is missing) is left out, never faked.
_SUBCOMMANDS = [
    ("novacron_core.runtime.node_cli", "node_command"),
    ("novacron_core.runtime.gateway.cli", "gateway_command"),
    ("novacron_core.runtime.agent.cli", "agent_command"),
    ("novacron_core.demo.cli", "demo_command"),
    ("novacron_core.client_cli", "status_command"),
    ("novacron_core.client_cli", "vms_group"),
    ("novacron_core.client_cli", "conflicts_group"),
    ("novacron_core.wire.kv_cli", "kv_group"),
    ("novacron_operator.render", "render_command"),
    ("novacron_core.observe.cli", "health_command"),
    ("novacron_core.observe.cli", "forecast_command"),
    ("novacron_core.observe.cli", "debug_group"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="novacron")
def main() -> None:
    """NovaCron: a multi-region control plane for VM fleets.

    \b
    Start here:
      novacron demo              a real 3-region federation on this machine, with a story
      novacron demo --interactive   keep it running to explore with curl
    """


@main.command("version")
def version_command() -> None:
    """Print NovaCron's version and the Python it runs on."""
    click.echo(f"novacron {__version__} (Python {platform.python_version()})")


def _register() -> None:
    for module, attr in _SUBCOMMANDS:
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if e.name is not None and module.startswith(e.name):
                continue  # that part of the package has not landed: no command, not a stub
            raise
        main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
