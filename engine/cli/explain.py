"""The `explain` command: Grad-CAM or saliency of one photo's prediction, as a picture."""

from __future__ import annotations

import sys

import numpy as np

from ..explain import METHODS, explain, explain_network, find_layer, overlay
from ..inputspec import InputSpec, photo_pixels, photo_to_array
from ..models import load_model
from ..summary import fmt_accuracy
from .common import OK, UsageError, check_out, model_parser

MIN_SIDE = 224  # a smaller input (MNIST's 28) is enlarged for viewing, by whole pixels


def add_commands(sub) -> None:
    """Add the `explain` subcommand to an argparse subparsers object (engine.cli.main wires it)."""
    p = model_parser(
        sub, "explain", help="Grad-CAM / saliency heatmap of a prediction over the photo",
        description="Which parts of a photo made MODEL predict a class: Grad-CAM (the chosen "
                    "layer's maps weighted by the class score's gradient) or saliency (the "
                    "gradient's size at each pixel), drawn over the photo as the model sees it "
                    "(after the model's input spec: resize, crop). The score explained is the "
                    "class's logit, the output before the final Softmax.")
    p.add_argument("model", metavar="MODEL", help="project, .onnx file, example or template")
    p.add_argument("--image", required=True, metavar="FILE", help="a photo (JPEG, PNG, ...)")
    p.add_argument("--class", dest="class_index", type=int, default=None, metavar="K",
                   help="class number to explain (default: the top prediction)")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="Grad-CAM's layer (default: the last one with spatial output)")
    p.add_argument("--method", choices=METHODS, default="gradcam", help="default: gradcam")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="heatmap opacity over the photo, 0..1 (default 0.5)")
    p.add_argument("--out", "-o", required=True, metavar="PNG", help="picture to write")
    p.set_defaults(func=cmd_explain)


def class_names(project) -> list[str]:
    """The class names a model carries (a fine-tuned project's data classes), or []."""
    names = (project.meta or {}).get("data", {}).get("classes") if project.meta else None
    return [str(n) for n in names] if isinstance(names, list) else []


def cmd_explain(args) -> int:
    from PIL import Image

    if not 0 <= args.alpha <= 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha:g}")
    out = check_out(args.out, "heatmap.png")
    project = load_model(args.model)
    graph, weights = project.graph, project.weights
    if weights is None:
        print(f"warning: '{args.model}' has no weights: the explanation is of random weights",
              file=sys.stderr)
    net = explain_network(graph, weights)
    spec = getattr(graph, "input_spec", None) or InputSpec.for_shape(net.input_shape)
    x, notes = photo_to_array(args.image, spec)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if x.shape != net.input_shape:
        raise UsageError(f"the input spec gives {'×'.join(map(str, x.shape))} but the network "
                         f"takes {'×'.join(map(str, net.input_shape))}")
    layer = find_layer(net, args.layer) if args.layer else None
    e = explain(net, x, args.method, args.class_index, layer)
    names = class_names(project)
    name = names[e.class_index] if e.class_index < len(names) else f"class {e.class_index}"
    where = (f" at layer '{net.graph.nodes[e.layer].name}'" if e.layer else "")
    print(f"{e.class_index}\t{name}\tprobability {fmt_accuracy(e.probability)}\t"
          f"logit {e.score:.4f}")
    print(f"{args.method} of class {e.class_index} ({name}){where}", file=sys.stderr)
    for n in e.notes:
        print(f"note: {n}", file=sys.stderr)

    pixels, _ = photo_pixels(args.image, spec)  # the photo as the model sees it
    if spec.channels == "BGR":
        pixels = pixels[:, :, ::-1]
    picture = overlay(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, e.heatmap, args.alpha)
    im = Image.fromarray(np.ascontiguousarray(picture), "RGB")
    k = -(-MIN_SIDE // max(1, min(im.size)))
    if k > 1:
        im = im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)
    try:
        im.save(out, format="PNG")
    except OSError as exc:
        print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}", file=sys.stderr)
    return OK
