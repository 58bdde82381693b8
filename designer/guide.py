"""Help ▸ Build Your First Network: six guided steps in a side dock that build a tiny CNN
(Input → Conv → ReLU → Pool → Flatten → Linear). Each step says what to do and why; it ticks
itself off when the graph holds that layer fed by the previous step's layer, whichever way the
user added it, and "Do it for me" adds it through the editor (one undoable command)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.graph import Graph


@dataclass(frozen=True)
class Step:
    type_name: str
    text: str


STEPS = (
    Step("Input", "An <b>Image input</b> says what the network reads (a new network has one: "
         "1×28×28, an MNIST digit)."),
    Step("Conv2d", "Drag <b>Convolution 2D</b> from the Layers panel onto the canvas while the "
         "input is selected: it connects itself. Its filters find edges and strokes."),
    Step("ReLU", "Add a <b>ReLU</b> after the convolution: it keeps the positive responses."),
    Step("MaxPool2d", "Add <b>Max pooling 2D</b>: it halves the maps' height and width."),
    Step("Flatten", "Add <b>Flatten</b>: the maps become one vector for the classifier."),
    Step("Linear", "Add <b>Fully connected</b> (Linear): 10 outputs, one score per digit. "
         "Done — open the Training tab and press Train."),
)


def progress(graph: Graph) -> tuple[int, str | None]:
    """How many steps `graph` completes (a chain of STEPS' types, each layer fed by the one
    before) and the id of the last layer of that chain."""
    done, last = 0, None
    for step in STEPS:
        if last is None:
            cands = [n.id for n in graph.nodes.values() if n.type_name == step.type_name]
        else:
            cands = [i for i in graph.successors(last)
                     if graph.nodes[i].type_name == step.type_name]
        if not cands:
            break
        done, last = done + 1, cands[0]
    return done, last


class GuidePanel(QWidget):
    """The steps as a checklist; the current one is bold with a "Do it for me" button."""

    def __init__(self, window, parent: QWidget | None = None):
        super().__init__(parent)
        self.window_ = window
        self.doc = window.doc
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 10)
        lay.setSpacing(8)
        self.rows: list[QLabel] = []
        for k, _step in enumerate(STEPS):
            lbl = QLabel()
            lbl.setWordWrap(True)
            lbl.setTextFormat(Qt.TextFormat.RichText)
            lbl.setObjectName(f"guide_step_{k}")
            self.rows.append(lbl)
            lay.addWidget(lbl)
        buttons = QHBoxLayout()
        self.do_button = QPushButton("Do it for me")
        self.do_button.setToolTip("Add this step's layer after the previous one (Ctrl+Z undoes)")
        self.do_button.clicked.connect(self.do_step)
        buttons.addWidget(self.do_button)
        buttons.addStretch(1)
        lay.addLayout(buttons)
        lay.addStretch(1)
        self.doc.validated.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args) -> None:
        done, _ = progress(self.doc.graph)
        for k, (lbl, step) in enumerate(zip(self.rows, STEPS)):
            mark = "✓" if k < done else f"{k + 1}."
            text = f"{mark} {step.text}"
            lbl.setText(f"<b>{text}</b>" if k == done else text)
            lbl.setEnabled(k <= done)
        self.done = done
        self.do_button.setEnabled(done < len(STEPS))
        self.do_button.setText("Do it for me" if done < len(STEPS) else "All done ✓")

    def do_step(self) -> None:
        """Add the next step's layer after the last one of the chain (connected to it)."""
        done, last = progress(self.doc.graph)
        if done >= len(STEPS):
            return
        step = STEPS[done]
        scene, editor = self.window_.scene, self.window_.editor
        if last is not None:
            scene.select_nodes([last])
        else:
            scene.clearSelection()
        editor.add_layer(step.type_name)


def start_guide(window) -> QDockWidget:
    """A new blank network and the guide docked at the right of `window`."""
    window.file_controller.new_file()
    dock = getattr(window, "guide_dock", None)
    if dock is None:
        dock = QDockWidget("First network", window)
        dock.setObjectName("dock_guide")
        dock.setWidget(GuidePanel(window, dock))
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        inspector = window.docks.get("inspector")
        if inspector is not None:
            window.splitDockWidget(inspector, dock, Qt.Orientation.Vertical)
        window.guide_dock = dock
    dock.show()
    dock.raise_()
    return dock
