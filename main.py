"""CNN Designer: `python main.py [FILE]` opens the designer; `python main.py COMMAND ...` runs the
command line (summary, train, export, ...; see `python main.py --help`)."""

from __future__ import annotations

import ctypes.util
import os
import sys

APT_HINT = ("Qt cannot start because a system library is missing. On Debian/Ubuntu install:\n"
            "  sudo apt-get install libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 "
            "libglib2.0-0 libxkbcommon-x11-0 libxcb-cursor0\n")


def run_gui(argv: list[str]) -> int:
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if (platform in ("", "xcb") and os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY") and not ctypes.util.find_library("xcb-cursor")):
        sys.stderr.write(APT_HINT)  # Qt >= 6.5 aborts without libxcb-cursor on X11
        return 1
    try:
        from designer.app import run
    except ModuleNotFoundError as exc:
        if exc.name in ("designer", "designer.app"):
            sys.stderr.write("The designer window is not ready yet. Use the command line, e.g.\n"
                             "  python main.py summary lenet5\n  python main.py --help\n")
            return 1
        raise
    except ImportError as exc:  # e.g. "libEGL.so.1: cannot open shared object file"
        sys.stderr.write(f"{APT_HINT}({exc})\n")
        return 1
    return run([sys.argv[0], *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        from engine.cli import command_names
        from engine.cli import main as cli_main
        if argv[0] in command_names() or argv[0] in ("-h", "--help", "--version"):
            return cli_main(argv)
    return run_gui(argv)


if __name__ == "__main__":
    sys.exit(main())
