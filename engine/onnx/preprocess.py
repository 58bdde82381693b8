"""The input spec in exported ONNX: as metadata (always) and as an optional preprocessing
subgraph in front of the network (export --preprocess).

The subgraph takes the photo after its resize and centre crop, as 0..255 pixels:

    pixels (N×H×W×C or N×C×H×W; uint8 or float) → Cast float → Transpose to N×C×H×W (NHWC)
    → [reverse channels: BGR models fed RGB] → Div (255 / range) → Add low → Sub mean → Div std

the float32 operations and their order of engine.inputspec.normalise, so the exported model and
the app give the same bits. Resize and crop stay outside: ONNX Resize cannot reproduce Pillow's
antialiased bilinear resize (what torchvision and the app use) to the last bit, and a model that
resized inside would answer differently from the app on the same photo. The spec's
`resize`/`size` travel in the metadata for the caller (INPUT_SPEC_KEY).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..inputspec import InputSpec, model_spec, photo_pixels, scale_divisor

INPUT_SPEC_KEY = "cnn_designer.input_spec"  # metadata: the input spec's JSON
PREPROCESS_KEY = "cnn_designer.preprocess"  # metadata: the pixel input's layout, when included
PIXELS_NAME = "pixels"
LAYOUTS = ("NHWC", "NCHW")
PIXEL_TYPES = ("uint8", "float32")


def spec_props(graph) -> dict[str, str]:
    """The metadata entry for the graph's spec; {} where no photo fits its Input."""
    try:
        return {INPUT_SPEC_KEY: model_spec(graph).to_string()}
    except DataError:
        return {}


def stored_spec(model) -> InputSpec | None:
    """The spec a model's metadata carries, or None (absent or unreadable)."""
    from ..errors import ParamError

    for p in model.metadata_props:
        if p.key == INPUT_SPEC_KEY:
            try:
                return InputSpec.from_json(p.value)
            except ParamError:
                return None
    return None


def read_spec(path, in_shape) -> InputSpec:
    """The spec of an .onnx file: its metadata's, else the default for its input (C, H, W)."""
    import onnx

    spec = stored_spec(onnx.load(str(path), load_external_data=False))
    if spec is not None:
        return spec
    if in_shape is None or len(in_shape) != 3 or None in in_shape or in_shape[0] not in (1, 3):
        raise DataError(f"{path}: its input {in_shape} is not a 1- or 3-channel image of a "
                        f"known size, so a photo cannot be prepared for it")
    return InputSpec.for_shape(in_shape)


def pixel_input(path) -> tuple[str, str] | None:
    """(layout, dtype) of an .onnx file whose input is pixels with the preprocessing inside
    (add_preprocessing), else None."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for p in model.metadata_props:
        if p.key == PREPROCESS_KEY:
            parts = p.value.split()
            if (len(parts) >= 3 and parts[0] == PIXELS_NAME and parts[1] in LAYOUTS
                    and parts[2] in PIXEL_TYPES):
                return parts[1], parts[2]
    return None


def photo_pixel_batch(source, spec: InputSpec, layout: str, dtype: str
                      ) -> tuple[np.ndarray, list[str]]:
    """A photo as a model with the preprocessing inside takes it: resized and cropped by `spec`,
    RGB (a BGR model reverses the channels itself), 0..255, a batch of one in `layout`."""
    import dataclasses

    rgb = dataclasses.replace(spec, channels="RGB") if spec.channels == "BGR" else spec
    px, notes = photo_pixels(source, rgb)
    px = px[None] if layout == "NHWC" else px.transpose(2, 0, 1)[None]
    return np.ascontiguousarray(px, np.uint8 if dtype == "uint8" else np.float32), notes


def add_preprocessing(model, spec: InputSpec, layout: str = "NHWC", dtype: str = "uint8"):
    """A copy of `model` (input "input", float N×C×H×W) whose input is "pixels": N×H×W×C (or
    N×C×H×W) 0..255 of `dtype`, normalised inside by `spec` as engine.inputspec.normalise."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layout not in LAYOUTS:
        raise ValueError(f"preprocessing layout must be one of {', '.join(LAYOUTS)}, got "
                         f"{layout!r}")
    if dtype not in PIXEL_TYPES:
        raise ValueError(f"preprocessing pixels must be one of {', '.join(PIXEL_TYPES)}, got "
                         f"{dtype!r}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    old = g.input[0]
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    n, c, h, w = dims
    if (c, h, w) != spec.shape:
        raise ValueError(f"the input spec makes {spec.shape} arrays but the model's input is "
                         f"{(c, h, w)}")
    shape = [n, h, w, c] if layout == "NHWC" else [n, c, h, w]
    pixels = helper.make_tensor_value_info(
        PIXELS_NAME, TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT, shape)
    nodes, inits = [], []

    def const(name: str, value) -> str:
        a = np.asarray(value, np.float32).reshape(-1, 1, 1) if np.ndim(value) else \
            np.asarray(value, np.float32)
        inits.append(numpy_helper.from_array(a, f"pre_{name}"))
        return f"pre_{name}"

    def op(kind: str, inputs: list[str], **attrs) -> str:
        name = f"pre_{kind.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [name], name=name, **attrs))
        return name

    x = op("Cast", [PIXELS_NAME], to=TensorProto.FLOAT)
    if layout == "NHWC":
        x = op("Transpose", [x], perm=[0, 3, 1, 2])
    if spec.channels == "BGR":  # the pixels are RGB, as every image library gives them
        idx = numpy_helper.from_array(np.array([2, 1, 0], np.int64), "pre_bgr")
        inits.append(idx)
        x = op("Gather", [x, "pre_bgr"], axis=1)
    x = op("Div", [x, const("scale", scale_divisor(spec))])
    if spec.value_range[0] != 0:
        x = op("Add", [x, const("low", spec.value_range[0])])
    if spec.mean:
        x = op("Sub", [x, const("mean", spec.mean)])
    if spec.std:
        x = op("Div", [x, const("std", spec.std)])
    for node in g.node:  # the network now reads the normalised tensor
        node.input[:] = [x if i == old.name else i for i in node.input]
    for o in g.output:
        if o.name == old.name:
            raise ValueError("the model's output is its input; nothing to preprocess")
    g.input.remove(old)
    g.input.insert(0, pixels)
    nodes.extend(g.node)
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(inits)
    helper.set_model_props(out, {**{p.key: p.value for p in out.metadata_props},
                                 INPUT_SPEC_KEY: spec.to_string(),
                                 PREPROCESS_KEY: f"{PIXELS_NAME} {layout} {dtype} 0..255, "
                                                 f"resized and cropped to {spec.size[0]}×"
                                                 f"{spec.size[1]}"})
    onnx.checker.check_model(out)
    return out
