"""The inspector: edit the selected layer and see, with its actual numbers, what it computes.

The editor is generated from the layer type's `Param` declarations (no form per layer type;
the editors per parameter kind are in designer/param_editors.py).
Every edit goes through `doc.push(SetParamCommand(...))`, so it is undoable; spin-box bursts
merge into one undo step. The editor is built once per selected node and then updated in place
on `doc.validated`, so typing never loses focus. Shapes, counts and formulas come from the
document's validation and `engine.formulas` (the same arithmetic as the engine).
"""

from __future__ import annotations

import html
from html import escape

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from engine.errors import DataError
from engine.formulas import node_formulas
from engine.inputspec import input_shape, model_spec, spec_note
from engine.layers import REGISTRY, Layer, Param, fmt_shape
from engine.messages import ERROR
from engine.summary import human_bytes, human_count

from .commands import (
    ApplyFixCommand,
    RenameNodeCommand,
    SetInputSpecCommand,
    SetParamCommand,
    SetTrainableCommand,
)
from .param_editors import EDITORS, ParamEditor, current_params, param_title
from .problems import fix_buttons
from .readouts import bound, network_state, unknown_layers
from .theme import (
    FlowBody,
    family_color,
    is_dark,
    layer_pixmap,
    severity_color,
    severity_hex,
    severity_icon,
    theme_state,
)


def mono_font() -> QFont:
    f = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    f.setPointSizeF(max(QFont().pointSizeF() - 0.5, 8.0))
    return f


# ---- panel -----------------------------------------------------------------------------------

def _display_lines(items: list[str]) -> list[str]:
    """Break long formula lines for a narrow panel: 'K_eff = ...; O = ...' and trailing remarks
    in parentheses go on their own indented line."""
    out = []
    for t in items:
        head, sep, _ = t.partition(": ")
        indent = " " * (len(head) + 2) if sep and len(head) <= 3 else "   "
        parts = t.replace(" trainable (γ, β) + ", " trainable (γ, β) +; ").split("; ")
        for k, part in enumerate(parts):
            remark = ""
            if len(part) > 44 and part.endswith(")") and " (" in part:
                cut = part.rfind(" (")
                if " = " in part[:cut] and part[cut + 2:cut + 3] not in "(0123456789":
                    part, remark = part[:cut], part[cut + 1:]
            out.append(part if k == 0 else indent + part)
            if remark:
                out.append(indent + remark)
    return out


class _Section(QWidget):
    """A titled block: small caps title with a rule, then content."""

    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        # never take the panel's spare height (the stretch at the bottom does)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 10, 0, 0)
        lay.setSpacing(4)
        head = QHBoxLayout()
        head.setSpacing(6)
        self.title = QLabel(title.upper(), self)
        f = self.title.font()
        f.setBold(True)
        f.setPointSizeF(max(f.pointSizeF() - 1.5, 7.0))
        f.setLetterSpacing(QFont.SpacingType.PercentageSpacing, 106)
        self.title.setFont(f)
        self.title.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        rule = QFrame(self)
        rule.setFrameShape(QFrame.Shape.HLine)
        rule.setFrameShadow(QFrame.Shadow.Plain)
        rule.setForegroundRole(QPalette.ColorRole.Light if is_dark(self.palette())
                               else QPalette.ColorRole.Mid)
        self.side = QLabel(self)  # right-aligned headline number
        self.side.setFont(f)
        head.addWidget(self.title)
        head.addWidget(rule, 1)
        head.addWidget(self.side)
        lay.addLayout(head)
        self.body = QVBoxLayout()
        self.body.setContentsMargins(0, 0, 0, 0)
        self.body.setSpacing(3)
        lay.addLayout(self.body)


def _formula_label(parent) -> QLabel:
    lab = QLabel(parent)
    lab.setFont(mono_font())
    # one formula per line, never re-wrapped (mid-formula breaks read badly); a narrow dock
    # clips the right end instead of widening the panel, and the tooltip has the full text
    lab.setWordWrap(False)
    lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    lab.setTextFormat(Qt.TextFormat.RichText)
    return lab


class MessageCard(QFrame):
    """One validation message: icon, text, optional fix button (pushes ApplyFixCommand)."""

    def __init__(self, message, on_fix, dark: bool, parent=None):
        super().__init__(parent)
        self.message = message
        color = severity_color(message.severity, dark)
        bg = QColor(color)
        bg.setAlpha(28)
        self.setObjectName("messageCard")
        self.setStyleSheet(
            f"#messageCard {{ background: rgba({bg.red()},{bg.green()},{bg.blue()},{bg.alpha()});"
            f" border: 1px solid rgba({color.red()},{color.green()},{color.blue()},120);"
            f" border-left: 3px solid {color.name()}; border-radius: 4px; }}")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(8)
        icon = QLabel(self)
        icon.setPixmap(severity_icon(message.severity, dark).pixmap(16, 16))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        lay.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        col = QVBoxLayout()
        col.setSpacing(4)
        self.text = QLabel(message.text, self)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        col.addWidget(self.text)
        # one button per alternative fix, the preferred one first (`fix_button`)
        self.fix_buttons = fix_buttons(message, lambda fix: on_fix(message, fix), self, "undoable")
        self.fix_button = self.fix_buttons[0] if self.fix_buttons else None
        for b in self.fix_buttons:
            row = QHBoxLayout()
            row.addWidget(b)
            row.addStretch(1)
            col.addLayout(row)
        lay.addLayout(col, 1)


class InspectorPanel(QWidget):
    """Layer inspector dock. `set_node(node_id | None)` chooses the layer shown.

    Signals: node_activated(str) — never emitted by edits; kept for symmetry with other panels
    (a click on an input's name could select it in a later version).
    """

    node_activated = Signal(str)

    def __init__(self, doc, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("InspectorPanel")
        self.doc = doc
        self.node_id: str | None = None
        self._type: str | None = None
        self.editors: dict[str, ParamEditor] = {}
        self.param_labels: dict[str, QLabel] = {}
        self._messages_key = None

        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)

        self.empty = QLabel(self)  # nothing selected: an overview of the whole network
        self.empty.setWordWrap(True)
        self.empty.setTextFormat(Qt.TextFormat.RichText)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.empty.setContentsMargins(14, 12, 14, 12)

        self.banner = QLabel(self)  # refusals / lock reason
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self._banner_timer = QTimer(self)
        self._banner_timer.setSingleShot(True)
        self._banner_timer.timeout.connect(self._update_banner)
        outer.insertWidget(0, self.banner)

        self.body: QWidget | None = None
        self._show_empty()

        doc.validated.connect(self._on_validated)
        doc.title_changed.connect(self._on_validated)  # the overview names the file
        doc.weights_changed.connect(self._on_weights_changed)
        doc.node_removed.connect(self._on_node_removed)
        doc.graph_reset.connect(self._on_graph_reset)
        doc.edit_refused.connect(self._on_refused)
        doc.locked_changed.connect(self._on_locked_changed)
        theme_state().changed.connect(self._on_theme_changed)
        app = QApplication.instance()
        if app is not None:
            app.focusChanged.connect(self._on_focus_changed)
        self._update_banner()

    # ---- public --------------------------------------------------------------------------

    def set_node(self, node_id: str | None) -> None:
        """Show (and edit) the node `node_id`, or the empty hint for None / unknown ids."""
        if node_id is not None and node_id not in self.doc.graph.nodes:
            node_id = None
        if node_id == self.node_id and (node_id is None or self.body is not None):
            self.refresh()
            return
        self.node_id = node_id
        if node_id is None:
            self._show_empty()
            return
        self._build()
        self.refresh()

    def refresh(self) -> None:
        """Update values, shapes, formulas and messages in place (no rebuild, no focus loss)."""
        if self.node_id is None:
            return
        node = self.doc.graph.nodes.get(self.node_id)
        if node is None:
            self.set_node(None)
            return
        if node.type_name != self._type:
            self._build()
        v = self.doc.validation
        res = v.nodes.get(self.node_id)
        layer = res.layer if res is not None else None
        in_shape = res.in_shapes[0] if res is not None and res.in_shapes else None
        values = current_params(node, layer)
        for name, ed in self.editors.items():
            ed.set_value(values.get(name), layer, in_shape)
        if not self.name_edit.hasFocus() and self.name_edit.text() != node.name:
            self.name_edit.setText(node.name)
        if self.trainable.isChecked() != node.trainable:
            self.trainable.blockSignals(True)
            self.trainable.setChecked(node.trainable)
            self.trainable.blockSignals(False)
        self._refresh_figures(node, res)
        self._refresh_messages(res)
        self._refresh_spec()
        self.body.fit()

    # ---- building ------------------------------------------------------------------------

    def overview_html(self) -> str:
        """The whole network in a few lines: what the panel shows when no layer is selected."""
        g, v = self.doc.graph, self.doc.validation
        layers = len(g.nodes)  # as the status bar counts them
        inp = next((v.nodes[n.id].out_shape for n in g.nodes.values()
                    if n.type_name == "Input" and n.id in v.nodes), None)
        out = v.nodes[v.output_id].out_shape if v.output_id in v.nodes else None
        frozen = sum(1 for n in g.nodes.values() if not n.trainable)
        text, severity = network_state(g, v)
        colour = (severity_hex(severity, self) if severity != "missing"
                  else self.palette().placeholderText().color().name())
        if severity == "ok":
            text += ": every layer's shape checks out"
        elif severity != "missing":
            text += ": see the Problems panel"
        state = f"<span style='color:{colour}'>{html.escape(text)}</span>"
        unknown = unknown_layers(g, v)  # "?" for what is not known, as the status bar says
        params = (f"{bound(v.total_params, unknown)}" if unknown else
                  f"{v.total_params:,} ({v.trainable_params:,} trainable)")
        rows = [("File", html.escape(self.doc.path.name if self.doc.path else "untitled")),
                ("Input → output", f"{fmt_shape(inp)} → {fmt_shape(out)}"),
                ("Layers", f"{layers}" + (f" ({frozen} frozen)" if frozen else "")),
                ("Parameters", params),
                ("Multiply-adds", f"{bound(v.macs, unknown, human_count)} per image"),
                ("Weights", bound(4 * v.total_params, unknown, human_bytes)),
                ("Trained weights", "yes" if self.doc.weights else "not yet")]
        table = "".join(f"<tr><td style='padding-right:12px'>{k}</td><td><b>{val}</b></td></tr>"
                        for k, val in rows)
        return (f"<h3 style='margin-bottom:2px'>{html.escape(g.name)}</h3>"
                f"<p style='margin-top:0'>{state}</p><table>{table}</table>"
                f"<p style='color:{self.palette().placeholderText().color().name()}'>Select a "
                f"layer on the canvas to see its settings, its output-size and parameter "
                f"formulas with the real numbers, and its receptive field.</p>")

    def _show_empty(self) -> None:
        self.empty.setText(self.overview_html())
        self._type = None
        self.param_help = None
        self.editors, self.param_labels = {}, {}
        self.body = None
        self._messages_key = None
        self.empty.setParent(None)
        self.scroll.setWidget(self.empty)

    def _build(self) -> None:
        node = self.doc.graph.nodes[self.node_id]
        cls = REGISTRY[node.type_name]
        dark = is_dark(self.palette())
        self._type = node.type_name
        self._messages_key = None
        body = FlowBody()
        body.setObjectName("inspectorBody")
        lay = QVBoxLayout(body)
        lay.setContentsMargins(12, 10, 12, 12)
        lay.setSpacing(4)

        # header: icon, friendly name, type name in the family colour
        head = QHBoxLayout()
        head.setSpacing(10)
        icon = QLabel(body)
        icon.setPixmap(layer_pixmap(node.type_name, 32, dark))
        icon.setFixedSize(34, 34)
        head.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        titles = QVBoxLayout()
        titles.setSpacing(0)
        title = QLabel(cls.label, body)
        tf = title.font()
        tf.setPointSizeF(tf.pointSizeF() + 2)
        tf.setBold(True)
        title.setFont(tf)
        color = family_color(cls.category, dark).name()
        sub = QLabel(f"<span style='color:{color}; font-weight:600'>{escape(cls.type_name)}"
                     f"</span> &nbsp;·&nbsp; {escape(cls.category)}", body)
        titles.addWidget(title)
        titles.addWidget(sub)
        head.addLayout(titles, 1)
        lay.addLayout(head)
        caption = QLabel(cls.doc, body)
        caption.setWordWrap(True)
        caption.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        caption.setContentsMargins(0, 4, 0, 0)
        lay.addWidget(caption)

        # layer: name, trainable
        sec = _Section("Layer", body)
        form = self._form()
        self.name_edit = QLineEdit(node.name, body)
        self.name_edit.setToolTip("Unique name; becomes the ONNX node and PyTorch module name.")
        self.name_edit.editingFinished.connect(self._rename)
        form.addRow("Name", self.name_edit)
        self.trainable = QCheckBox("Trainable", body)
        self.trainable.setToolTip("Unchecked: the layer is frozen; training leaves its weights "
                                  "as they are (transfer learning).")
        self.trainable.setChecked(node.trainable)
        self.trainable.toggled.connect(self._set_trainable)
        has_weights = cls.weight_shapes is not Layer.weight_shapes
        if has_weights:
            form.addRow("", self.trainable)
        else:
            self.trainable.setVisible(False)
        sec.body.addLayout(form)
        lay.addWidget(sec)

        # parameters, from the declarations
        self.editors, self.param_labels = {}, {}
        if cls.params:
            sec = _Section("Parameters", body)
            form = self._form()
            for p in cls.params:
                ed = EDITORS[p.kind](p, self._commit, body)
                label = QLabel(param_title(p), body)
                label.setToolTip(p.doc)
                label.setBuddy(ed)
                form.addRow(label, ed)
                self.editors[p.name] = ed
                self.param_labels[p.name] = label
            sec.body.addLayout(form)
            # a caption under the form explains the parameter being edited (focus follows)
            self.param_help = QLabel(body)
            self.param_help.setWordWrap(True)
            self.param_help.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            self.param_help.setContentsMargins(0, 4, 0, 0)
            self._show_param_help(cls.params[0])
            sec.body.addWidget(self.param_help)
            lay.addWidget(sec)
        else:
            self.param_help = None

        # how photos become this input (the Input layer only)
        self.spec_text = self.spec_button = None
        if node.type_name == "Input":
            sec = _Section("Photos in", body)
            self.spec_text = QLabel(body)
            self.spec_text.setWordWrap(True)
            self.spec_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.spec_button = QPushButton("Input spec…", body)
            self.spec_button.setToolTip("Resize / crop, channel order, value range, mean / std "
                                        "and interpolation every photo goes through.")
            self.spec_button.clicked.connect(self.edit_input_spec)
            sec.body.addWidget(self.spec_text)
            sec.body.addWidget(self.spec_button, 0, Qt.AlignmentFlag.AlignLeft)
            lay.addWidget(sec)

        # messages (filled by refresh)
        self.msg_section = _Section("Problems", body)
        lay.addWidget(self.msg_section)

        # shapes and formulas
        sec = _Section("Shape", body)
        self.flow = QLabel(body)
        ff = mono_font()
        ff.setPointSizeF(ff.pointSizeF() + 1.5)
        ff.setBold(True)
        self.flow.setFont(ff)
        self.flow.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.size_lines = _formula_label(body)
        sec.body.addWidget(self.flow)
        sec.body.addWidget(self.size_lines)
        lay.addWidget(sec)
        self.shape_section = sec

        self.param_section = _Section("Weights", body)
        self.param_text = _formula_label(body)
        self.param_notes = QLabel(body)  # plain words: wraps in a narrow dock
        self.param_notes.setWordWrap(True)
        self.param_notes.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.param_section.body.addWidget(self.param_text)
        self.param_section.body.addWidget(self.param_notes)
        lay.addWidget(self.param_section)

        self.macs_section = _Section("Compute (MACs)", body)
        self.macs_text = _formula_label(body)
        self.macs_section.body.addWidget(self.macs_text)
        lay.addWidget(self.macs_section)

        self.rf_section = _Section("Receptive field", body)
        self.rf_text = QLabel(body)
        self.rf_text.setWordWrap(True)
        self.rf_steps = _formula_label(body)
        self.rf_section.body.addWidget(self.rf_text)
        self.rf_section.body.addWidget(self.rf_steps)
        lay.addWidget(self.rf_section)
        lay.addStretch(1)

        self.body = body
        self.scroll.takeWidget()
        self.scroll.setWidget(body)

    @staticmethod
    def _form() -> QFormLayout:
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        form.setContentsMargins(0, 2, 0, 0)
        return form

    # ---- refreshing ----------------------------------------------------------------------

    def _refresh_figures(self, node, res) -> None:
        v = self.doc.validation
        f = node_formulas(self.doc.graph, v, self.node_id)
        dim = self.palette().color(QPalette.ColorRole.PlaceholderText).name()

        def lines(items):
            return "<br>".join(escape(t).replace("\n", "<br>").replace("  ", "&nbsp;&nbsp;")
                               for t in _display_lines(items))

        if f is None:
            self.flow.setText("? → ?")
            self.size_lines.setText(f"<span style='color:{dim}'>The parameters are invalid; fix "
                                    "them to see the shapes.</span>")
            for s in (self.param_section, self.macs_section, self.rf_section):
                s.setVisible(False)
            return
        self.flow.setText(f.flow if node.type_name != "Input" else f.flow.split(" → ")[-1])
        self.size_lines.setToolTip("\n".join(f.output_size))
        if f.output_size:
            self.size_lines.setText(lines(f.output_size))
        elif res.in_shapes and any(s is None for s in res.in_shapes):
            self.size_lines.setText(f"<span style='color:{dim}'>Input shape unknown: fix the "
                                    "layers above first.</span>")
        elif not res.in_shapes and node.type_name != "Input":
            self.size_lines.setText(f"<span style='color:{dim}'>Not connected: connect a layer "
                                    "to its input.</span>")
        else:
            self.size_lines.setText("")
        self.size_lines.setVisible(bool(self.size_lines.text()))

        has_counts = f.params is not None and (f.params.total or node.type_name in
                                               ("Conv2d", "Linear", "BatchNorm2d"))
        self.param_section.setVisible(bool(has_counts))
        if has_counts:
            self.param_text.setText(lines([f.params.text]))
            self.param_notes.setText("\n".join(f.params.notes))
            self.param_notes.setVisible(bool(f.params.notes))
            self.param_text.setToolTip("\n".join([f.params.text, *f.params.notes]))
            self.param_section.side.setText(f"{f.params.total:,}")
        show_macs = f.macs is not None and f.macs.trainable > 0
        self.macs_section.setVisible(show_macs)
        if show_macs:
            self.macs_text.setText(escape(f.macs.text))
            self.macs_text.setToolTip(f.macs.text)
            self.macs_section.side.setText(human_count(f.macs.trainable))
        self.rf_section.setVisible(bool(f.receptive_field) and node.type_name != "Input")
        self.rf_text.setText(f.receptive_field)
        self.rf_steps.setText(lines(f.rf_steps))
        self.rf_steps.setVisible(bool(f.rf_steps))
        if res.receptive_field:
            rf = res.receptive_field
            self.rf_section.side.setText(f"{rf[0]}×{rf[1]}")

    def _refresh_spec(self) -> None:
        if self.spec_text is None:
            return
        try:
            spec = model_spec(self.doc.graph)
        except DataError as exc:
            self.spec_text.setText(str(exc))
            self.spec_button.setEnabled(False)
            return
        self.spec_button.setEnabled(True)
        how = "stored with the model" if self.doc.graph.input_spec is not None else "the default"
        note = spec_note(self.doc.graph)
        self.spec_text.setText(f"{spec.describe()} ({how})" + (f". {note}" if note else ""))

    def _refresh_messages(self, res) -> None:
        msgs = list(res.messages) if res is not None else []
        key = [(m.severity, m.text, m.fixes) for m in msgs]
        if key == self._messages_key:
            return
        self._messages_key = key
        sec = self.msg_section
        while sec.body.count():
            item = sec.body.takeAt(0)
            if item.widget() is not None:
                item.widget().hide()
                item.widget().deleteLater()
        sec.setVisible(bool(msgs))
        dark = is_dark(self.palette())
        for m in sorted(msgs, key=lambda m: m.severity != ERROR):
            sec.body.addWidget(MessageCard(m, self._apply_fix, dark, self.body))
        n_err = sum(m.severity == ERROR for m in msgs)
        sec.side.setText(f"{n_err} error{'s' * (n_err != 1)}" if n_err else
                         f"{len(msgs)} warning{'s' * (len(msgs) != 1)}")
        # mark the parameters the messages are about
        flagged = {}
        for m in msgs:
            if m.param and (m.param not in flagged or m.severity == ERROR):
                flagged[m.param] = m
        for name, label in self.param_labels.items():
            m = flagged.get(name)
            if m is None:
                label.setStyleSheet("")
                label.setToolTip(self.editors[name].param.doc)
            else:
                c = severity_color(m.severity, dark).name()
                label.setStyleSheet(f"color: {c}; font-weight: 600;")
                label.setToolTip(m.text)

    # ---- edits ---------------------------------------------------------------------------

    def _commit(self, name: str, value) -> None:
        if self.node_id is None:
            return
        ok = self.doc.push(SetParamCommand(self.doc, self.node_id, name, value))
        if not ok:
            self.refresh()  # put the editor back to the graph's value

    def _rename(self) -> None:
        if self.node_id is None:
            return
        node = self.doc.graph.nodes.get(self.node_id)
        text = self.name_edit.text().strip()
        if node is None or text == node.name:
            return
        if not self.doc.push(RenameNodeCommand(self.doc, self.node_id, text)):
            self.name_edit.setText(node.name)

    def _set_trainable(self, flag: bool) -> None:
        if self.node_id is None:
            return
        if not self.doc.push(SetTrainableCommand(self.doc, [self.node_id], flag)):
            self.refresh()

    def edit_input_spec(self) -> None:
        """The input spec dialog; its result is one undoable SetInputSpecCommand."""
        from .input_spec_dialog import InputSpecDialog

        try:
            spec, shape = model_spec(self.doc.graph), input_shape(self.doc.graph)
        except DataError as exc:
            self._flash(str(exc))
            return
        dialog = InputSpecDialog(spec, shape, self)
        if dialog.exec() and dialog.current_spec() != spec:  # unchanged: no undo step
            self.doc.push(SetInputSpecCommand(self.doc, dialog.result_spec()))

    def _apply_fix(self, message, fix=None) -> None:
        self.doc.push(ApplyFixCommand(self.doc, message, fix))

    # ---- document signals ----------------------------------------------------------------

    def _on_weights_changed(self) -> None:
        self._on_validated(None)

    def _on_validated(self, _v) -> None:
        if self.node_id is not None:
            self.refresh()
        elif self.scroll.widget() is self.empty:
            self.empty.setText(self.overview_html())

    def _show_param_help(self, param: Param) -> None:
        if getattr(self, "param_help", None) is not None:
            self.param_help.setText(f"{param_title(param)}: {param.doc}")

    def _on_focus_changed(self, _old, new) -> None:
        if new is None or self.body is None or not self.editors:
            return
        for ed in self.editors.values():
            if new is ed or ed.isAncestorOf(new):
                self._show_param_help(ed.param)
                return

    # bound methods, not lambdas: Qt drops the connection when the panel is deleted
    def _on_graph_reset(self) -> None:
        self.set_node(None)

    def _on_locked_changed(self, _reason) -> None:
        self._update_banner()

    def _on_theme_changed(self, _dark: bool) -> None:
        if self.node_id is not None:  # family colours and icons are per theme: rebuild
            self._type = None
            self.refresh()

    def _on_node_removed(self, node_id: str) -> None:
        if node_id == self.node_id:
            self.set_node(None)

    def _on_refused(self, reason: str) -> None:
        self._flash(reason)

    def _flash(self, text: str) -> None:
        dark = is_dark(self.palette())
        c = severity_color("warning", dark)
        self.banner.setStyleSheet(
            f"QLabel {{ background: rgba({c.red()},{c.green()},{c.blue()},40);"
            f" border-bottom: 1px solid {c.name()}; padding: 6px 10px; }}")
        self.banner.setText(text)
        self.banner.setVisible(True)
        self._banner_timer.start(6000)

    def _update_banner(self) -> None:
        reason = self.doc.locked_reason
        if reason:
            self._flash(f"Editing is locked: {reason}")
            self._banner_timer.stop()
        else:
            self.banner.setVisible(False)
        if self.body is not None:
            self.body.setEnabled(not reason)


__all__ = ["InspectorPanel", "MessageCard"]

