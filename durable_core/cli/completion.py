"""``durable-core completion bash|zsh``: a shell completion script for the commands and their
options, generated from the parser itself (so it never drifts from the real options).

    eval "$(durable-core completion bash)"            # in ~/.bashrc
    durable-core completion zsh > "${fpath[1]}/_durable-core"
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK

__all__ = ["register", "commands_and_options"]


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``completion``."""
    c = sub.add_parser("completion", help="print a shell completion script (bash, zsh)",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    c.add_argument("shell", choices=["bash", "zsh"])
    c.set_defaults(func=run_completion)


def commands_and_options(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Every command of ``parser`` with its option strings (sorted)."""
    out: dict[str, list[str]] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sp in action.choices.items():
                opts = sorted({o for a in sp._actions for o in a.option_strings})  # noqa: SLF001
                out[name] = opts
    return out


def _bash(table: dict[str, list[str]]) -> str:
    cases = "\n".join(
        f'        {cmd}) opts="{" ".join(opts)}" ;;' for cmd, opts in sorted(table.items())
    )
    return f"""# bash completion for durable-core
_durable_core() {{
    local cur cmd opts
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    cmd="${{COMP_WORDS[1]}}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=( $(compgen -W "{" ".join(sorted(table))} --help --version" -- "$cur") )
        return
    fi
    case "$cmd" in
{cases}
        *) opts="" ;;
    esac
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}}
complete -o default -F _durable_core durable-core
"""


def _zsh(table: dict[str, list[str]]) -> str:
    cases = "\n".join(
        f"    {cmd}) compadd -- {' '.join(opts)} ;;" for cmd, opts in sorted(table.items())
    )
    return f"""#compdef durable-core
# zsh completion for durable-core
if (( CURRENT == 2 )); then
  compadd -- {' '.join(sorted(table))}
  return
fi
case $words[2] in
{cases}
esac
_files
"""


def run_completion(args: argparse.Namespace) -> int:
    """Print the script for ``args.shell``."""
    from . import build_parser

    table = commands_and_options(build_parser())
    print(_bash(table) if args.shell == "bash" else _zsh(table), end="")
    return EXIT_OK
