"""CNN Designer: `python main.py [FILE]` opens the designer; `python main.py COMMAND ...` runs the
command line (summary, train, export, ...; see `python main.py --help`)."""

from __future__ import annotations

import os
import sys

from designer.launch import run_gui


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        from engine.cli import command_names
        from engine.cli import main as cli_main
        first = argv[0]
        commands = command_names()
        if first in commands or first in ("-h", "--help", "--version"):
            return cli_main(argv)
        looks_like_path = "." in first or os.sep in first or "/" in first
        if not first.startswith("-") and not looks_like_path and not os.path.exists(first):
            # a bare word that is neither a command nor a file: a typo, not a window to open
            import difflib

            close = difflib.get_close_matches(first, commands, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            sys.stderr.write(f"cnn-designer: error: unknown command '{first}'{hint}; see "
                             f"--help for the commands (a FILE to open must exist)\n")
            return 2
    return run_gui(argv)


if __name__ == "__main__":
    sys.exit(main())
