"""The Import Report dialog: shown (non-modal) after an ONNX file opens, its parity check run in
a worker thread with progress and Cancel, reachable again from File > Import Report…, gone with
the document; a mismatch shown as one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("onnxruntime")

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from designer import import_report as ir
from designer import theme
from designer.theme import severity_color
from engine.onnx.importer import import_onnx

RESNET = Path(__file__).resolve().parent.parent / "data" / "torch_resnet_small.onnx"


def _dialog(qtbot, imported=None, source=RESNET):
    imported = imported or import_onnx(source)
    dlg = ir.ImportReportDialog(imported.record, source, imported)
    qtbot.addWidget(dlg)
    return dlg


def test_opening_an_onnx_file_shows_the_report_and_checks_it(window, qtbot):
    fc = window.file_controller
    assert not fc.act_import_report.isEnabled()
    assert fc.open_path(RESNET, ask=False)
    dlg = fc.import_report
    assert dlg is not None and dlg.isVisible() and not dlg.isModal()
    assert fc.act_import_report.isEnabled()
    qtbot.waitUntil(lambda: dlg.state == ir.MATCHES and not dlg.running, timeout=60_000)
    p = dlg.parity
    assert p.ok and p.max_rel < 1e-4
    assert dlg.tile_abs.value.text() == f"{p.max_abs:.3g}"
    assert dlg.tile_rel.value.text() == f"{p.max_rel:.3g}"
    assert dlg.tile_top1.value.text() == "4 / 4  (100%)"
    assert "Matches ONNX Runtime" in dlg.badge.text()
    assert "torch_resnet_small.onnx" in dlg.parity_detail.text()
    ops = {dlg.ops.topLevelItem(i).text(0): dlg.ops.topLevelItem(i)
           for i in range(dlg.ops.topLevelItemCount())}
    assert ops["Conv"].text(1) == "6" and ops["Conv"].text(2) == "Conv2d ×6"
    assert ops["Conv"].childCount() == 6
    assert ops["Gemm"].child(0).text(2) == "Linear 'fc'"
    # a clean PyTorch file's one warning: the exporter folded its BatchNorm into the convs
    assert dlg.warnings.isVisible() and dlg.warnings.count() == 1
    assert "folded BatchNorm into 6 convolution" in dlg.warnings.item(0).text()
    # closing hides it; the menu shows it again
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    assert fc.act_import_report in file_menu.actions()
    dlg.buttons.rejected.emit()
    assert not dlg.isVisible()
    fc.act_import_report.trigger()
    assert dlg.isVisible()
    # another document: the report goes with the imported one
    fc.open_example("lenet5")
    assert fc.import_report is None and not fc.act_import_report.isEnabled()


def test_the_check_runs_off_the_gui_thread_with_progress(qtbot):
    dlg = _dialog(qtbot)
    steps = []
    with qtbot.waitSignal(dlg.check_finished, timeout=60_000) as sig:
        assert dlg.start_check()
        assert dlg.running and dlg.state == ir.RUNNING
        assert dlg.cancel_button.isVisibleTo(dlg) and dlg.progress.isVisibleTo(dlg)
        assert not dlg.start_check()  # one at a time
        dlg._worker.stepped.connect(lambda t, d, n: steps.append((d, n)))
    assert sig.args[0] is dlg.parity and dlg.parity.ok
    qtbot.waitUntil(lambda: not dlg.running, timeout=10_000)
    assert steps and steps[-1][0] == steps[-1][1]  # the bar reaches its end
    assert not dlg.cancel_button.isVisibleTo(dlg) and dlg.again_button.isVisibleTo(dlg)


def test_cancel_stops_the_check_and_check_again_reimports(qtbot, monkeypatch):
    real = ir.check_parity
    gate, asked = threading.Event(), threading.Event()

    def held(source, imported, progress=None, should_stop=None):
        def stop():  # the first step waits until the test has pressed Cancel
            asked.set()
            gate.wait(30)
            return should_stop()
        return real(source, imported, progress=progress, should_stop=stop)

    monkeypatch.setattr(ir, "check_parity", held)
    dlg = _dialog(qtbot)
    with qtbot.waitSignal(dlg.check_finished, timeout=60_000) as sig:
        dlg.start_check()
        assert asked.wait(30)
        dlg.cancel_button.click()
        assert "Cancelling" in dlg.status.text()
        gate.set()
    assert sig.args[0] is None and dlg.state == ir.CANCELLED
    assert "cancelled" in dlg.badge.text() and dlg.tile_rel.value.text() == "—"
    qtbot.waitUntil(lambda: not dlg.running, timeout=10_000)
    monkeypatch.setattr(ir, "check_parity", real)
    with qtbot.waitSignal(dlg.check_finished, timeout=60_000) as sig:
        dlg.again_button.click()  # without the import in memory: the file again
    assert sig.args[0] is not None and dlg.state == ir.MATCHES


def test_a_differing_import_is_shown_as_one(qtbot):
    imp = import_onnx(RESNET)
    key = next(k for k in imp.weights if k.endswith(".weight"))
    imp.weights[key] = -imp.weights[key]
    dlg = _dialog(qtbot, imp)
    with qtbot.waitSignal(dlg.check_finished, timeout=60_000):
        dlg.start_check()
    assert dlg.state == ir.DIFFERS and "Differs" in dlg.badge.text()
    assert float(dlg.tile_rel.value.text()) > 1e-2
    assert "beyond the tolerance 1e-4" in dlg.parity_detail.text()
    before = theme.current_mode()
    theme.apply_theme(QApplication.instance(), "light")
    try:
        assert severity_color("error").name() in dlg.badge.styleSheet()
        theme.apply_theme(QApplication.instance(), "dark")  # the colours follow the theme
        assert severity_color("error", dark=True).name() in dlg.badge.styleSheet()
        assert severity_color("error", dark=True).name() in dlg.tile_rel.value.styleSheet()
    finally:
        theme.apply_theme(QApplication.instance(), before)
    dlg.copy_report()
    text = QGuiApplication.clipboard().text()
    assert "import report: torch_resnet_small.onnx" in text
    assert "Conv '/stem/stem.0/Conv' -> Conv2d 'stem.0'" in text
    assert "DIFFERS from ONNX Runtime" in text


def test_warnings_are_listed(qtbot, tmp_path):
    import onnx

    from tests.engine.test_import_report import channels_last_model

    path = tmp_path / "nhwc.onnx"
    onnx.save(channels_last_model(), str(path))
    dlg = _dialog(qtbot, source=path)
    assert dlg.warnings.count() == 1 and dlg.warnings.isVisibleTo(dlg)
    assert "channels-last" in dlg.warnings.item(0).text()
    assert "channels-last" in dlg.fact_labels["Input"].text()
    with qtbot.waitSignal(dlg.check_finished, timeout=60_000):
        dlg.start_check()
    assert dlg.state == ir.MATCHES
