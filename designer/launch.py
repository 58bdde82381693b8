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
            f"  sudo apt-get install {PACKAGES}\n(as root, drop sudo)\n")
# what Qt's X11 (xcb) platform plugin loads; without one of them Qt aborts with no exception
XCB_LIBS = ("xcb-cursor", "xcb-icccm", "xcb-image", "xcb-keysyms", "xcb-randr",
            "xcb-render-util", "xcb-shape", "xcb-xkb", "xkbcommon-x11", "X11-xcb")


def usage_error(argv: list[str], prog: str) -> str | None:
    """The one-line usage error for `argv`, or None when it is FILE and Qt's own single-dash
    options (-style fusion, -platform ...): a double-dash option such as --bogus is a mistake
    to report (exit 2), not a reason to open the window."""
    bad = [a for a in argv if a.startswith("--") and a != "--help"]
    if bad:
        return f"{prog}: error: unrecognized option {bad[0]}; usage: {prog} [FILE]"
    return None


def run_gui(argv: list[str], prog: str = "python main.py") -> int:
    """Open the designer with `argv` (FILE to open, optionally); returns the exit code. `prog`
    is how the user started it, for the messages (`cnn-designer-gui` or `python main.py`)."""
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(f"usage: {prog} [FILE]\nOpen CNN Designer, with FILE (a .cnnd "
                         f"project, .json architecture or .onnx model) if given.\n")
        return 0
    error = usage_error(argv, prog)
    if error:
        sys.stderr.write(error + "\n")
        return 2
    cli = "python main.py" if prog == "python main.py" else "cnn-designer"
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform in ("", "xcb") and not os.environ.get("WAYLAND_DISPLAY"):
        if not os.environ.get("DISPLAY"):
            sys.stderr.write(f"{prog}: No display found. Run CNN Designer on a desktop, or "
                             f"headless with QT_QPA_PLATFORM=offscreen; `{cli} --help` shows "
                             f"the command line.\n")
            return 1
        missing = [lib for lib in XCB_LIBS if not ctypes.util.find_library(lib)]
        if missing:
            sys.stderr.write(f"{prog}: " + APT_HINT.format(what=f" (lib{', lib'.join(missing)})"))
            return 1
    try:
        from designer.app import run
    except ModuleNotFoundError as exc:
        if exc.name in ("designer", "designer.app"):
            sys.stderr.write(f"{prog}: the designer window is not ready yet. Use the command "
                             f"line, e.g.\n  {cli} summary lenet5\n  {cli} --help\n")
            return 1
        raise
    except ImportError as exc:  # e.g. "libEGL.so.1: cannot open shared object file"
        sys.stderr.write(f"{prog}: " + APT_HINT.format(what=f" ({exc})"))
        return 1
    return run([sys.argv[0], *argv])



def main() -> int:
    """Entry point of the `cnn-designer-gui` command: `cnn-designer-gui [FILE]`."""
    return run_gui(sys.argv[1:], prog="cnn-designer-gui")
