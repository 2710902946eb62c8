"""The ``novacron`` command. Subcommands live beside the code they drive and register here."""

from __future__ import annotations

import importlib
import platform

import click

from novacron_core import __version__

# name -> (module, attribute) of click commands provided by other parts of the package. Each
# is imported only when it runs (or when --help lists it): `novacron vms list` need not load the
# node, the operator's renderers and aiohttp's server (~1.5 s idle, 10+ s on a loaded machine).
# A part that is not importable (e.g. its optional dependency is missing) is left out, never faked.
_SUBCOMMANDS = {
    "node": ("novacron_core.runtime.node_cli", "node_command"),
    "gateway": ("novacron_core.runtime.gateway.cli", "gateway_command"),
    "agent": ("novacron_core.runtime.agent.cli", "agent_command"),
    "demo": ("novacron_core.demo.cli", "demo_command"),
    "status": ("novacron_core.client_cli", "status_command"),
    "vms": ("novacron_core.client_cli", "vms_group"),
    "conflicts": ("novacron_core.client_cli", "conflicts_group"),
    "kv": ("novacron_core.wire.kv_cli", "kv_group"),
    "render": ("novacron_operator.render", "render_command"),
    "health": ("novacron_core.observe.cli", "health_command"),
    "forecast": ("novacron_core.observe.cli", "forecast_command"),
    "debug": ("novacron_core.observe.cli", "debug_group"),
    "backup": ("novacron_core.dr.cli", "backup_group"),
    "dr": ("novacron_core.dr.cli", "dr_group"),
}


def _load(name: str) -> click.Command | None:
    module, attr = _SUBCOMMANDS[name]
    try:
        cmd = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:
        if e.name is not None and module.startswith(e.name):
            return None  # that part of the package is not installed: no command, not a stub
        raise
    if not isinstance(cmd, click.Command) or cmd.name != name:
        raise TypeError(f"{module}.{attr} is not the click command {name!r}")
    return cmd


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _SUBCOMMANDS and cmd_name not in self.commands:
            cmd = _load(cmd_name)
            if cmd is None:
                return None
            self.add_command(cmd)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def commands() -> dict[str, click.Command]:
    """Every subcommand this installation has, loaded (for checks that walk them all)."""
    ctx = click.Context(main)
    found = {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}
    return {name: cmd for name, cmd in found.items() if cmd is not None}


if __name__ == "__main__":
    main()
