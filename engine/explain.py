"""Explained predictions: Grad-CAM and input-gradient saliency for one image and one class.

    net = explain_network(graph, weights)        # once per model: gradients, no weight updates
    e = grad_cam(net, x, class_index=None)       # x (C, H, W) as the model takes it
    e.heatmap                                    # (H, W) float32 in [0, 1], the input's size

The score explained is the class's *logit*: the output before a final Softmax (the network's
output as is when it has none), as in Selvaraju et al. (2017) and pytorch-grad-cam: a
probability's gradient also moves with every other class.

- Grad-CAM (https://arxiv.org/abs/1610.02391): A = the chosen layer's output (K, h, w),
  G = dScore/dA; weights w_k = mean over h, w of G_k; cam = ReLU(Σ_k w_k A_k), resized to the
  input's H×W by bilinear interpolation (half-pixel centres, PyTorch's align_corners=False),
  then scaled to 0..1 (divided by its range; all zeros when it is flat).
- Saliency (Simonyan et al., 2013, https://arxiv.org/abs/1312.6034): max over the input's
  channels of |dScore/dx|, scaled to 0..1 by its maximum.

The network runs in inference mode (BatchNorm with its running statistics, Dropout passing
everything) with the caches backward needs, and no weight gradients are computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DataError, GraphError
from .graph import Graph
from .layers import fmt_shape
from .layers.upsample import _axis_matrix
from .nn.network import Network
from .validate import validate

METHODS = ("gradcam", "saliency")


@dataclass
class Explanation:
    """One explained prediction. `heatmap` (H, W) float32 in [0, 1] at the input's size;
    `raw`: Grad-CAM's ReLU(Σ w_k A_k) at the layer's size before resizing and scaling, or the
    saliency's max_c |dScore/dx| before scaling."""

    method: str
    heatmap: np.ndarray
    raw: np.ndarray
    class_index: int
    score: float  # the class's logit
    probability: float  # softmax of the logits at class_index
    layer: str | None = None  # Grad-CAM's node id
    notes: list[str] = field(default_factory=list)


def explain_network(graph: Graph, weights: dict[str, np.ndarray] | None) -> Network:
    """The network compiled for gradients w.r.t. its input and layer outputs: every layer
    frozen (inference arithmetic, no weight gradients) and Dropout given p = 0, since Dropout
    is the identity at inference but drops in the forward pass that keeps backward's caches."""
    g = graph.copy()
    for node in g.nodes.values():
        if node.type_name == "Dropout":
            node.params = dict(node.params, p=0.0)
    v = validate(g)
    v.raise_if_invalid("explain its predictions")
    net = Network.compile(g, np.random.default_rng(0), validation=v)
    if weights:
        net.load_state_dict(weights, strict=False)  # a layer without weights keeps its initial
    net.gradients_only()
    return net


def spatial_layers(net: Network) -> list[str]:
    """Ids (topological) of the layers Grad-CAM can use: a C×H×W output with H·W > 1 that the
    network's output depends on (not the Input)."""
    ancestors = net.graph.ancestors(net.output_id)
    out = []
    for nid in net.order:
        shape = net.validation.nodes[nid].out_shape
        if (nid != net.input_id and nid in ancestors and len(shape) == 3
                and shape[1] * shape[2] > 1):
            out.append(nid)
    return out


def default_layer(net: Network) -> str:
    """Grad-CAM's default layer: the last one with spatial output (the last convolutional
    stage's output, before global pooling: ResNet's layer4, VGG's last pooling)."""
    layers = spatial_layers(net)
    if not layers:
        raise GraphError("Grad-CAM needs a layer with spatial output (C×H×W with H·W > 1) "
                         "before the output; this network has none: use --method saliency")
    return layers[-1]


def find_layer(net: Network, spec: str) -> str:
    """The node id of the layer named (or with id) `spec`, checked to have spatial output."""
    node = next((n for n in net.graph.nodes.values() if spec in (n.id, n.name)), None)
    if node is None:
        names = [net.graph.nodes[n].name for n in spatial_layers(net)]
        hint = (f"; layers with spatial output: {', '.join(repr(n) for n in names[-6:])}"
                if names else "")
        raise GraphError(f"--layer {spec}: no layer of that name or id{hint}")
    shape = net.validation.nodes[node.id].out_shape
    if node.id not in spatial_layers(net):
        why = ("is the input" if node.id == net.input_id else
               f"has output {fmt_shape(shape)}, not a C×H×W map with H·W > 1"
               if node.id in net.graph.ancestors(net.output_id) else
               "does not lead to the output")
        raise GraphError(f"--layer {node.name}: Grad-CAM needs a layer with spatial output, "
                         f"and '{node.name}' {why}")
    return node.id


def _check_input(net: Network, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == len(net.input_shape):
        x = x[None]
    if x.shape != (1, *net.input_shape):
        raise DataError(f"the network expects one image {fmt_shape(net.input_shape)}, got "
                         f"{'×'.join(map(str, x.shape))}")
    return x


def _logits_node(net: Network) -> str:
    if not net.ends_in_softmax:
        return net.output_id
    src, port = net.refs[net.output_id][0]
    if port:
        raise GraphError(f"the final Softmax reads output {port} of "
                         f"'{net.graph.nodes[src].name}'; explanations need its output 0")
    return src


def _class_grad(net: Network, x: np.ndarray, class_index: int | None, capture: tuple[str, ...]
                ) -> tuple[dict[str, np.ndarray], np.ndarray, int, float, float]:
    """One forward (with caches) and one backward of the class's logit: (outputs of every
    node, dScore/dx (1, C, H, W), class, logit, probability). Gradients at `capture` nodes end
    up in net.captured_grads."""
    outs = net.forward(x, training=True, keep=True, logits=True)
    logits = outs[_logits_node(net)].reshape(-1).astype(np.float64)
    n = len(logits)
    k = int(np.argmax(logits)) if class_index is None else int(class_index)
    if not 0 <= k < n:
        raise DataError(f"class {k} is out of range: the output "
                         f"'{net.graph.nodes[net.output_id].name}' has {n} classes (0–{n - 1})")
    e = np.exp(logits - logits.max())
    prob = float(e[k] / e.sum())
    dy = np.zeros((1, *outs[_logits_node(net)].shape[1:]), np.float32)
    dy.reshape(-1)[k] = 1.0
    dx = net.backward(dy, from_logits=True, capture=capture)
    return outs, dx, k, float(logits[k]), prob


def resize_bilinear(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) bilinear with half-pixel centres (PyTorch's interpolate with
    align_corners=False; the Upsample layer's matrices)."""
    h, w = a.shape
    mh = _axis_matrix(h, size[0], "bilinear", h / size[0]).astype(np.float32)
    mw = _axis_matrix(w, size[1], "bilinear", w / size[1]).astype(np.float32)
    return (mh @ a.astype(np.float32) @ mw.T).astype(np.float32)


def _unit(a: np.ndarray, low: float | None = None) -> np.ndarray:
    """Scaled to 0..1: (a - min) / (max - min), or a / max when `low` is given (0); zeros when
    there is no range."""
    lo = float(a.min()) if low is None else low
    span = float(a.max()) - lo
    return ((a - lo) / span).astype(np.float32) if span > 0 else np.zeros_like(a, np.float32)


def grad_cam(net: Network, x: np.ndarray, class_index: int | None = None,
             layer: str | None = None) -> Explanation:
    """Grad-CAM of one image x (C, H, W) (or (1, C, H, W)) for `class_index` (None: the top
    prediction) at `layer` (a node id; None: default_layer). `net` from explain_network."""
    x = _check_input(net, x)
    nid = layer or default_layer(net)
    if nid not in spatial_layers(net):
        nid = find_layer(net, nid)
    outs, _, k, score, prob = _class_grad(net, x, class_index, (nid,))
    a = outs[nid][0]
    g = net.captured_grads[nid]
    g = (g[0] if isinstance(g, list) else g)[0]
    w = g.mean(axis=(1, 2), dtype=np.float32)  # (K,)
    cam = np.maximum(np.tensordot(w, a, axes=1), 0).astype(np.float32)  # (h, w)
    up = resize_bilinear(cam, net.input_shape[1:])
    notes = []
    if not cam.any():
        notes.append(f"Grad-CAM is zero everywhere at '{net.graph.nodes[nid].name}': no region "
                     f"of its output raises the score of class {k} (try an earlier layer or "
                     f"the saliency)")
    return Explanation("gradcam", _unit(up), cam, k, score, prob, nid, notes)


def saliency(net: Network, x: np.ndarray, class_index: int | None = None) -> Explanation:
    """Input-gradient saliency of one image x (C, H, W) for `class_index` (None: the top
    prediction): max over channels of |dScore/dx|, (H, W)."""
    x = _check_input(net, x)
    _, dx, k, score, prob = _class_grad(net, x, class_index, ())
    sal = np.abs(dx[0]).max(axis=0).astype(np.float32)
    return Explanation("saliency", _unit(sal, 0.0), sal, k, score, prob)


def explain(net: Network, x: np.ndarray, method: str = "gradcam", class_index: int | None = None,
            layer: str | None = None) -> Explanation:
    """grad_cam or saliency by name (METHODS)."""
    if method == "gradcam":
        return grad_cam(net, x, class_index, layer)
    if method == "saliency":
        return saliency(net, x, class_index)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


# ---- pictures --------------------------------------------------------------------------------

def jet(v: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 through the 'jet' colour map (blue, cyan, yellow,
    red: the usual Grad-CAM picture), piecewise linear."""
    v = np.clip(np.asarray(v, np.float32), 0, 1)[..., None]
    centres = np.array([3, 2, 1], np.float32)  # r, g, b ramps peak at 3/4, 1/2, 1/4
    rgb = np.clip(1.5 - np.abs(4 * v - centres), 0, 1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def overlay(photo: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heatmap coloured (jet) over a photo: (H, W, 3) uint8 (or (H, W) grey) and (h, w) in
    [0, 1] -> (H, W, 3) uint8; the heatmap is resized to the photo (bilinear)."""
    p = np.asarray(photo)
    if p.ndim == 2:
        p = np.repeat(p[..., None], 3, axis=2)
    p = p[..., :3].astype(np.float32)
    hm = heatmap if heatmap.shape == p.shape[:2] else np.clip(
        resize_bilinear(heatmap, p.shape[:2]), 0, 1)
    out = (1 - alpha) * p + alpha * jet(hm).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
