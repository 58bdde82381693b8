"""Layer palette: families from the registry, search, drag payload, requests."""

from PySide6.QtCore import Qt

from designer.palette import LAYER_MIME, PalettePanel
from engine.layers import CATEGORIES, REGISTRY


def test_groups_follow_the_registry(qtbot):
    panel = PalettePanel()
    qtbot.addWidget(panel)
    families = panel.visible_families()
    assert families == [c for c in CATEGORIES if any(cls.category == c
                                                     for cls in REGISTRY.values())]
    assert sorted(panel.visible_types()) == sorted(REGISTRY)
    # each type sits under its own family
    for r in range(panel.proxy.rowCount()):
        head = panel.proxy.index(r, 0)
        for k in range(panel.proxy.rowCount(head)):
            t = panel.proxy.index(k, 0, head).data(Qt.ItemDataRole.UserRole + 1)
            assert REGISTRY[t].category == families[r]


def test_tooltips_and_icons_from_the_registry(qtbot):
    panel = PalettePanel()
    qtbot.addWidget(panel)
    idx = panel.index_of("Conv2d")
    assert REGISTRY["Conv2d"].doc in idx.data(Qt.ItemDataRole.ToolTipRole)
    assert idx.data(Qt.ItemDataRole.DisplayRole) == REGISTRY["Conv2d"].label
    assert not idx.data(Qt.ItemDataRole.DecorationRole).isNull()


def test_search_filters_by_label_type_and_doc(qtbot):
    panel = PalettePanel()
    qtbot.addWidget(panel)
    panel.search.setText("pool")
    shown = panel.visible_types()
    assert shown and all(REGISTRY[t].category == "Pooling" for t in shown)
    assert "MaxPool2d" in shown and "Conv2d" not in shown
    panel.search.setText("fully connected")  # the label of Linear
    assert panel.visible_types() == ["Linear"]
    panel.search.setText("residual")  # only in Add's help text
    assert panel.visible_types() == ["Add"]
    panel.search.setText("BatchNorm2d")  # the type name
    assert panel.visible_types() == ["BatchNorm2d"]
    assert panel.visible_families() == ["Normalization"]
    panel.search.setText("no such layer xyz")
    assert panel.visible_types() == []
    panel.search.clear()
    assert len(panel.visible_types()) == len(REGISTRY)


def test_drag_payload_carries_the_type_name(qtbot):
    panel = PalettePanel()
    qtbot.addWidget(panel)
    mime = panel.mime_for("MaxPool2d")
    assert mime.hasFormat(LAYER_MIME)
    assert bytes(mime.data(LAYER_MIME)).decode("utf-8") == "MaxPool2d"
    # family headers carry nothing
    head = panel.proxy.index(0, 0)
    assert panel.proxy.mimeData([head]) is None
    assert panel.model.mimeTypes() == [LAYER_MIME]
    assert panel.view.dragEnabled()
    from designer.palette import drag_pixmap
    chip = drag_pixmap("MaxPool2d", False)
    assert not chip.isNull() and chip.width() > chip.height()


def test_double_click_and_enter_request_a_layer(qtbot):
    panel = PalettePanel()
    qtbot.addWidget(panel)
    panel.show()
    got = []
    panel.layer_requested.connect(got.append)
    panel.view.doubleClicked.emit(panel.index_of("ReLU"))
    assert got == ["ReLU"]
    panel.view.setCurrentIndex(panel.index_of("Dropout"))
    qtbot.keyClick(panel.view, Qt.Key.Key_Return)
    assert got == ["ReLU", "Dropout"]
    panel.search.setText("sigmoid")
    qtbot.keyClick(panel.search, Qt.Key.Key_Return)
    assert got[-1] == "Sigmoid"


def test_theme_colours_icons_and_switching(qtbot):
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    from designer.document import Document
    from designer.inspector import InspectorPanel
    from designer.problems import ProblemsPanel
    from designer.summary_view import SummaryPanel
    from designer.theme import apply_theme, family_color, is_dark, layer_icon
    from engine.zoo.examples import load_example

    for dark in (False, True):
        colours = {family_color(c, dark).name() for c in CATEGORIES}
        assert len(colours) == len(CATEGORIES)  # every family has its own colour
    for t in REGISTRY:
        icon = layer_icon(t, False)
        assert not icon.isNull() and icon is layer_icon(t, False)  # cached

    app = QApplication.instance()
    old_style, old_palette = app.style().name(), QPalette(app.palette())
    doc = Document(load_example("lenet5"))
    panels = [PalettePanel(), InspectorPanel(doc), ProblemsPanel(doc), SummaryPanel(doc)]
    for p in panels:
        qtbot.addWidget(p)
    panels[1].set_node("conv1")
    try:
        assert apply_theme(app, "dark") is True
        assert is_dark(app.palette())
        assert panels[1].editors["out_channels"].spin.value() == 6  # rebuilt, still correct
        assert apply_theme(app, "light") is False
        assert not is_dark(app.palette())
    finally:
        app.setStyle(old_style)
        app.setPalette(old_palette)


def test_header_text_and_edge_labels_have_contrast_in_both_themes(qtbot):
    from PySide6.QtGui import QColor, QPalette

    from designer import theme

    # WCAG's formula checked on known pairs (black on white 21:1, a colour on itself 1:1)
    assert abs(theme.contrast_ratio(QColor("#000000"), QColor("#ffffff")) - 21) < 1e-6
    assert theme.contrast_ratio(QColor("#777777"), QColor("#777777")) == 1
    assert theme.header_text_color(QColor("#ffffff")).name() == theme.HEADER_INK_DARK
    assert theme.header_text_color(QColor("#000000")).name() == theme.HEADER_INK_LIGHT
    for category in CATEGORIES:
        for dark in (False, True):
            fill = theme.family_color(category, dark)
            ink = theme.header_text_color(fill)
            assert theme.contrast_ratio(ink, fill) >= 4.5, (category, dark, fill.name())
            if dark:  # pastel strips on a dark canvas: dark text, never white on pastel
                assert ink.name() == theme.HEADER_INK_DARK, category
    for dark, pal in ((False, theme.light_palette()), (True, theme.dark_palette())):
        label = theme.edge_label_color(dark)
        for role in (QPalette.ColorRole.Base, QPalette.ColorRole.Window):
            assert theme.contrast_ratio(label, pal.color(role)) >= 4.5, (dark, role)
