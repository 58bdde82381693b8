"""Start the GUI safely: check for a display and Qt's system libraries before Qt loads (a
missing X11 library makes Qt abort with no exception), then run designer.app.

Nothing here imports Qt at module level, so main.py and the `cnn-designer-gui` command can call
it and print the Debian packages to install instead of crashing.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

PACKAGES = ("libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 "
            "libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 "
            "libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1")
APT_HINT = ("Qt cannot start because a system library is missing{what}. On Debian/Ubuntu run:\n"
            f"  sudo apt-get install {PACKAGES}\n")
# what Qt's X11 (xcb) platform plugin loads; without one of them Qt aborts with no exception
XCB_LIBS = ("xcb-cursor", "xcb-icccm", "xcb-image", "xcb-keysyms", "xcb-randr",
            "xcb-render-util", "xcb-shape", "xcb-xkb", "xkbcommon-x11", "X11-xcb")


def run_gui(argv: list[str]) -> int:
    """Open the designer with `argv` (FILE to open, optionally); returns the exit code."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform in ("", "xcb") and not os.environ.get("WAYLAND_DISPLAY"):
        if not os.environ.get("DISPLAY"):
            sys.stderr.write("No display found. Run CNN Designer on a desktop, or headless with "
                             "QT_QPA_PLATFORM=offscreen; `python main.py --help` shows the "
                             "command line.\n")
            return 1
        missing = [lib for lib in XCB_LIBS if not ctypes.util.find_library(lib)]
        if missing:
            sys.stderr.write(APT_HINT.format(what=f" (lib{', lib'.join(missing)})"))
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
        sys.stderr.write(APT_HINT.format(what=f" ({exc})"))
        return 1
    return run([sys.argv[0], *argv])



def main() -> int:
    """Entry point of the `cnn-designer-gui` command: `cnn-designer-gui [FILE]`."""
    return run_gui(sys.argv[1:])
