"""The root command group: global options are accepted after the command as well as before it.

`agent backup disk.img --repo r` is what people type after `agent backup disk.img` failed; click only
knows a group's options before the sub-command's name. Rather than declaring every global option
on every command, the root moves a global option written after the command to the front before
click parses, unless the command has an option of that name itself (several have their own
`--json`), it is the value of one of the command's options, or it follows `--`.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

# the root's options that only make sense on their own: never taken from after a command
_NOT_GLOBAL = frozenset({"install_completion", "show_completion", "version"})


# typer 0.28 vendors click (typer._click): parameters and commands are told apart by what they have,
# not by click's classes
def _takes_value(param: Any) -> bool:
    return param.param_type_name == "option" and not param.is_flag and not param.count


def _names(command: Any) -> dict[str, Any]:
    return {name: p for p in command.params if p.name not in _NOT_GLOBAL
            for name in (*p.opts, *getattr(p, "secondary_opts", ())) if name.startswith("-")}


def hoist_globals(root: Any, ctx: Any, args: list[str]) -> list[str]:
    """`args` with the root's options that follow the command path moved in front of it."""
    own = _names(root)
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":  # global options already in front
        name = args[i].split("=", 1)[0]
        i += 2 if name in own and "=" not in args[i] and _takes_value(own[name]) else 1
    command = root
    while i < len(args) and hasattr(command, "get_command") and not args[i].startswith("-"):
        sub = command.get_command(ctx, args[i])
        if sub is None:
            return args  # click reports the unknown command
        command, i = sub, i + 1
    if command is root:
        return args
    local = _names(command)
    front, rest = args[:i], args[i:]
    moved: list[str] = []
    kept: list[str] = []
    j = 0
    while j < len(rest):
        token = rest[j]
        if token == "--":
            kept += rest[j:]
            break
        name = token.split("=", 1)[0] if token.startswith("--") else token
        if name in local:  # the command's own option (and its value) stays
            width = 2 if "=" not in token and _takes_value(local[name]) else 1
            kept += rest[j:j + width]
            j += width
        elif name in own and name not in ("-h", "--help"):
            width = 2 if "=" not in token and _takes_value(own[name]) else 1
            moved += rest[j:j + width]
            j += width
        else:
            kept.append(token)
            j += 1
    return moved + front + kept if moved else args


class RootGroup(TyperGroup):
    """typer's group, with global options allowed after the command (see hoist_globals)."""

    def parse_args(self, ctx: Any, args: list[str]) -> Any:
        return super().parse_args(ctx, hoist_globals(self, ctx, args))
