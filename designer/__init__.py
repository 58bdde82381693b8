"""The Qt designer: a drag-and-drop canvas over the engine's graph, with live validation."""

import sys


def _pin_none() -> None:
    """Work around a refcount bug of PySide6 6.12 on CPython < 3.12.

    Its bindings hand back `None` from void methods (and from pointer getters that return
    nullptr) without taking a new reference, so every such call — every `painter.setPen(...)`
    — removes one reference from `None`. After a few thousand calls (one big repaint) `None`
    reaches zero and the interpreter aborts with "none_dealloc: deallocating None". CPython 3.12
    made `None` immortal, which hides the bug; here we give `None` the same property by adding
    2**40 references up front (a few thousand years of calls). Measured by
    tests/designer/test_canvas.py::test_none_is_pinned.

    The same holds for `True`: every Python-side `Signal.emit()` returns it without a reference
    ("bool_dealloc: deallocating True" after a few hundred emits); `False` is pinned alike.
    designer/workers.py checks that at run time (guard_emit_refcount_bug).
    """
    if sys.version_info >= (3, 12):
        return
    import ctypes

    # ob_refcnt is the first field of every PyObject (a Py_ssize_t)
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40


_pin_none()
