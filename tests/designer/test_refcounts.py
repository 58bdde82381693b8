"""PySide6-Essentials 6.12.0 on CPython 3.11 hands back `None` from void calls and `True` from
`Signal.emit()` without a reference: each call takes one away, and the interpreter aborts
("none_dealloc") after ~10 k `setPen` calls. pyproject pins `<6.12` for `python_version < '3.12'`
(CPython >= 3.12 makes both immortal); these tests fail if an install brings the bug back."""

import sys

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPainter

CALLS = 2_000


def test_a_void_call_costs_no_reference_to_none():
    img = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(img)
    try:
        before = sys.getrefcount(None)
        for _ in range(CALLS):
            painter.setPen(Qt.PenStyle.NoPen)
        lost = before - sys.getrefcount(None)
    finally:
        painter.end()
    # other code may take or drop a handful of references meanwhile; the bug drops one per call
    assert lost < CALLS // 10, f"{lost} references to None lost in {CALLS} setPen calls"


class _Probe(QObject):
    ping = Signal()


def test_an_emit_costs_no_reference_to_true(qapp):
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(CALLS):
        probe.ping.emit()
    lost = before - sys.getrefcount(True)
    assert lost < CALLS // 10, f"{lost} references to True lost in {CALLS} emits"


def test_nothing_pins_the_singletons():
    """The old workaround added 2**40 references to None/True/False; it is gone for good."""
    if sys.version_info < (3, 12):
        assert sys.getrefcount(None) < 1 << 30
        assert sys.getrefcount(True) < 1 << 30
