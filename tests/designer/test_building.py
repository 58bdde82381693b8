"""Building by hand: readable zoom, connecting drops, reconnecting deletes, undo keys."""

from designer.canvas.items import DETAIL_LOD
from designer.canvas.view import READABLE_ZOOM


def test_lenet_opens_readable_with_a_hint_and_f_twice_shows_all(window, qtbot):
    window.resize(1600, 1000)
    qtbot.wait(30)
    window.file_controller.open_example("lenet5")
    qtbot.wait(30)
    view, scene = window.view, window.scene
    assert view.zoom() >= READABLE_ZOOM > DETAIL_LOD  # parameters on the cards
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.top() <= scene.content_rect().top() + 5  # its input in view
    assert "overview map" in window.statusBar().currentMessage()
    window.editor.act_fit.trigger()  # F: still readable (a tall net is not shrunk)
    assert view.zoom() >= READABLE_ZOOM
    window.editor.act_fit.trigger()  # F again: the whole network
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.contains(scene.content_rect())
    assert "Whole network" in window.statusBar().currentMessage()
    window.editor.act_fit.trigger()  # and back to readable
    assert view.zoom() >= READABLE_ZOOM
