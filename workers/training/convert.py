"""PP-OCR ONNX detector/recogniser -> trainable torch ``nn.Module`` -> ONNX again.

Training-side only (never imported by the app or the pipeline). Needs ``onnx``, ``onnxslim``
and ``onnx2torch`` (installed with ``--no-deps``: onnx2torch declares torchvision, which would
replace the CPU torch). onnx2torch imports ``torchvision`` at import time only for its NMS and
RoiAlign converters, which no PP-OCR model uses; :func:`_torchvision_stand_in` registers a tiny
stand-in module when the real one is missing, whose functions raise if ever called.

Pipeline of one conversion (:func:`build`)::

    shipped ONNX (sha256 recorded)
      -> graph fixes          Constant nodes -> initializers; ``auto_pad=SAME_*`` -> explicit pads
                              (PP-OCRv6); rec input height fixed at 48 + onnxslim (PP-OCRv4 rec)
      -> head surgery (rec)   optional new character set: classifier columns copied for the
                              characters both sets share, the others initialised small-random
      -> final activation cut the last Sigmoid (det) / Softmax (rec) is removed so the network
                              returns logits (what the DB / CTC losses want)
      -> onnx2torch           fx ``GraphModule``
      -> buffers -> params    float initializers that feed only Add/Mul/Sub/MatMul (linear
                              weights, biases, layer-norm gamma/beta, per-channel scales, the
                              learnable-affine scalars of PP-LCNetV3) become ``nn.Parameter``s;
                              formula constants (hard-swish 3 and 6, GELU, layer-norm eps, Pow
                              exponents, attention scales) and integer shape tensors stay
                              buffers (:func:`buffers_to_parameters`). Conv/BN weights are
                              parameters already.
      -> wrapper              :class:`PPOCRNet`: ``forward(x)`` = activation(logits), the same
                              contract as the shipped ONNX; ``logits(x)`` for training.

Tensors (all float32, NCHW, BGR channel order as PaddleOCR feeds OpenCV images):

- det: in (N, 3, H, W), H and W multiples of 32, normalised with the model set's mean/std
  (``workers.pipeline.models.MODEL_SETS``); out (N, 1, H, W) text probability (logits before the
  sigmoid).
- rec: in (N, 3, 48, W), pixels scaled to [-1, 1]; out (N, T, C) per-step class probabilities
  (logits before the softmax), T = W / 8 for v4/v5/v6-small. Class 0 is the CTC blank, classes
  1..n the characters of ``charset`` (the space is the last one, PaddleOCR's ``use_space_char``).

Save/load (decision): a checkpoint is ``{"spec": ModelSpec, "state_dict": ...}`` written with
``torch.save`` (tensors only, loaded with ``weights_only=True``). :func:`load` re-converts the
*shipped* ONNX named in the spec (its sha256 must match), re-applies the same deterministic fixes
and head size, then ``load_state_dict(strict=True)``. We do not pickle the ``GraphModule``: its
class is generated code that refers to onnx2torch internals, so a pickle breaks silently across
onnx2torch/torch versions, while a strict state_dict load either reproduces the network exactly
or fails loudly. Re-conversion costs well under a second per model. CPU inference never needs
this: it runs the ONNX written by :func:`export_onnx` through onnxruntime.
"""

from __future__ import annotations

import importlib.metadata
import math
import sys
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

Stage = Literal["det", "rec"]

REC_HEIGHT = 48
SPEC_VERSION = 1
# Conversion recipe per model set (keys of workers.pipeline.models.MODEL_SETS).
# "slim": run onnxslim first; "fix_rec_height": pin the rec input height to REC_HEIGHT.
RECIPES: dict[tuple[str, str], dict[str, bool]] = {
    ("ppocrv4", "rec"): {"fix_rec_height": True, "slim": True},
}


# --------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------
def _torchvision_stand_in() -> None:
    """Register a minimal ``torchvision.ops`` if torchvision is not importable.

    onnx2torch's NMS and RoiAlign converters import it at module import; PP-OCR graphs never
    contain those ops, so the stand-in only has to exist. Calling it raises.
    """
    try:
        import torchvision  # noqa: F401

        return
    except Exception:  # missing, or the broken CUDA-only wheel
        pass

    def _unavailable(*_a: Any, **_k: Any) -> Any:
        raise NotImplementedError("torchvision is not installed (stand-in for onnx2torch)")

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = _unavailable  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    tv.__version__ = "0.0.0+stand-in"  # type: ignore[attr-defined]
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.ops"] = ops


def _import_onnx2torch() -> Any:
    """``onnx2torch.convert``, imported with the torchvision stand-in, which is then taken out
    of ``sys.modules`` again (onnx2torch keeps its own references): left there, it has no
    module spec and breaks other libraries' availability probes (transformers raises
    "torchvision.__spec__ is None" when it is imported later in the same process)."""
    before = set(sys.modules)
    _torchvision_stand_in()
    added = [m for m in ("torchvision", "torchvision.ops") if m not in before and m in sys.modules]
    try:
        from onnx2torch import convert
    finally:
        for m in added:
            del sys.modules[m]
    return convert


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _sha256(path: Path) -> str:
    from workers.pipeline.models import sha256_file

    return sha256_file(path)


def source_path(model_set: str, stage: Stage) -> Path:
    """Path of the shipped ONNX file for ``model_set`` (a ``MODEL_SETS`` key) and ``stage``."""
    from workers.pipeline.models import MODEL_SETS

    if model_set not in MODEL_SETS:
        raise KeyError(f"unknown model set {model_set!r}; known: {sorted(MODEL_SETS)}")
    return getattr(MODEL_SETS[model_set], stage).path()


def shipped_charset(model_set: str) -> list[str]:
    """Characters of the shipped recogniser in class order 1..n (space last, as PaddleOCR)."""
    from workers.pipeline.models import MODEL_SETS

    ms = MODEL_SETS[model_set]
    if ms.dict_relpath is None:
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(ms.rec.path())).metadata_props}
        chars = meta["character"].splitlines()
    else:
        import importlib.util

        spec = importlib.util.find_spec(ms.dict_package or "")
        assert spec is not None and spec.submodule_search_locations
        p = Path(next(iter(spec.submodule_search_locations))) / ms.dict_relpath
        chars = p.read_text(encoding="utf-8").splitlines()
    return [c.strip("\r\n") for c in chars] + [" "]


# --------------------------------------------------------------------------------------------
# ONNX graph fixes (pure onnx, deterministic)
# --------------------------------------------------------------------------------------------
def constants_to_initializers(model: Any) -> int:
    """Replace ``Constant`` nodes holding a tensor by graph initializers. Returns the count."""
    from onnx import helper, numpy_helper

    g = model.graph
    keep, moved = [], 0
    for node in g.node:
        attr = {a.name: a for a in node.attribute}
        if node.op_type == "Constant" and "value" in attr:
            arr = numpy_helper.to_array(helper.get_attribute_value(attr["value"]))
            g.initializer.append(numpy_helper.from_array(np.array(arr), node.output[0]))
            moved += 1
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    return moved


def explicit_same_pads(model: Any) -> int:
    """Rewrite ``auto_pad=SAME_UPPER/SAME_LOWER`` on stride-1 Conv/MaxPool/AveragePool nodes to
    explicit ``pads`` (onnx2torch does not support auto_pad). With stride 1 the total padding is
    ``(k - 1) * dilation`` whatever the input size; SAME_UPPER puts the odd pixel at the end.
    Returns the number of rewritten nodes; raises for strides > 1 (input-size dependent)."""
    from onnx import helper

    n = 0
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if "auto_pad" not in attrs or attrs["auto_pad"].s not in (b"SAME_UPPER", b"SAME_LOWER"):
            continue
        upper = attrs["auto_pad"].s == b"SAME_UPPER"
        kernel = list(helper.get_attribute_value(attrs["kernel_shape"]))
        strides = list(helper.get_attribute_value(attrs["strides"])) if "strides" in attrs else []
        dil = list(helper.get_attribute_value(attrs["dilations"])) if "dilations" in attrs else []
        strides = strides or [1] * len(kernel)
        dil = dil or [1] * len(kernel)
        if any(s != 1 for s in strides):
            raise NotImplementedError(f"{node.name}: SAME padding with stride {strides}")
        total = [(k - 1) * d for k, d in zip(kernel, dil, strict=True)]
        small = [t // 2 for t in total]
        big = [t - s for t, s in zip(total, small, strict=True)]
        begin, end = (small, big) if upper else (big, small)
        keep = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(keep)
        node.attribute.append(helper.make_attribute("pads", begin + end))
        n += 1
    return n


def unshare_initializers(model: Any) -> int:
    """Give every use of an initializer its own copy (``name__uN``), so the ONNX graph and the
    torch module correspond one tensor to one tensor (onnx2torch already duplicates shared
    initializers into separate buffers; training would let the copies drift apart, and the
    weight write-back of :func:`export_onnx` needs a single owner). Returns copies made."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    seen: set[str] = set()
    made = 0
    for node in g.node:
        for j, name in enumerate(node.input):
            if name not in inits:
                continue
            if name in seen:
                made += 1
                new = f"{name}__u{made}"
                g.initializer.append(
                    numpy_helper.from_array(numpy_helper.to_array(inits[name]), new)
                )
                node.input[j] = new
            else:
                seen.add(name)
    return made


def fix_input_height(model: Any, height: int = REC_HEIGHT) -> None:
    """Pin dim 2 (height) of the first graph input to ``height`` (PP-OCRv4 rec declares '?',
    which leaves its reshapes unfoldable)."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[2]
    dim.Clear()
    dim.dim_value = height


def cut_final_activation(model: Any) -> str:
    """Remove the graph's final Sigmoid/Softmax so it outputs logits. Returns the op removed.

    Softmax must act on the last axis (checked), so ``softmax(logits, -1)`` restores it."""
    from onnx import helper

    g = model.graph
    out_name = g.output[0].name
    idx = next(i for i, n in enumerate(g.node) if out_name in n.output)
    node = g.node[idx]
    if node.op_type not in ("Sigmoid", "Softmax"):
        raise ValueError(f"final node is {node.op_type}, expected Sigmoid or Softmax")
    if node.op_type == "Softmax":
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), -1)
        rank = len(g.output[0].type.tensor_type.shape.dim)
        if axis not in (-1, rank - 1):
            raise ValueError(f"softmax over axis {axis} of a rank-{rank} output")
    src = node.input[0]
    del g.node[idx]
    # the producer of the activation input now writes the graph output
    for n in g.node:
        for j, o in enumerate(n.output):
            if o == src:
                n.output[j] = out_name
        for j, i in enumerate(n.input):
            if i == src:
                n.input[j] = out_name
    g.output[0].type.tensor_type.ClearField("shape")
    return node.op_type


def _rec_head(model: Any) -> tuple[Any, Any]:
    """(weight, bias) initializers of the rec classifier: the last MatMul (D, C) + Add (C,)."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    mm = [n for n in g.node if n.op_type == "MatMul" and n.input[1] in inits][-1]
    add = next(n for n in g.node if n.op_type == "Add" and mm.output[0] in n.input)
    b_name = next(i for i in add.input if i in inits)
    return inits[mm.input[1]], inits[b_name]


def resize_rec_head(
    model: Any, old_charset: list[str], new_charset: list[str], seed: int = 0
) -> dict[str, int]:
    """Give the rec classifier ``len(new_charset) + 1`` classes (blank + chars).

    Column of blank and of every character present in ``old_charset`` is copied (transfer);
    new characters get N(0, 0.01) weights and the mean old bias. Deterministic given ``seed``.
    Returns counts {"copied", "new"}.
    """
    from onnx import numpy_helper

    w_init, b_init = _rec_head(model)
    w = numpy_helper.to_array(w_init)  # (D, C_old)
    b = numpy_helper.to_array(b_init)  # (C_old,)
    if w.shape[1] != len(old_charset) + 1:
        raise ValueError(f"head has {w.shape[1]} classes, charset {len(old_charset)} + blank")
    rng = np.random.default_rng(seed)
    new_w = rng.normal(0.0, 0.01, size=(w.shape[0], len(new_charset) + 1)).astype(np.float32)
    new_b = np.full(len(new_charset) + 1, float(b[1:].mean()), dtype=np.float32)
    new_w[:, 0], new_b[0] = w[:, 0], b[0]
    where = {c: i + 1 for i, c in enumerate(old_charset)}
    copied = 0
    for j, c in enumerate(new_charset, start=1):
        if c in where:
            new_w[:, j], new_b[j] = w[:, where[c]], b[where[c]]
            copied += 1
    w_init.CopyFrom(numpy_helper.from_array(new_w, w_init.name))
    b_init.CopyFrom(numpy_helper.from_array(new_b, b_init.name))
    # stale inferred shapes would carry the old class count: drop them, fix the output's
    del model.graph.value_info[:]
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(out_dims) == 3:
        out_dims[2].Clear()
        out_dims[2].dim_value = len(new_charset) + 1
    return {"copied": copied, "new": len(new_charset) - copied}


# --------------------------------------------------------------------------------------------
# torch side
# --------------------------------------------------------------------------------------------
_TRAINABLE_USERS = {"OnnxBinaryMathOperation", "OnnxMatMul", "OnnxGemm"}


def _is_fixed_constant(v: float) -> bool:
    """Scalars that are part of an activation or normalisation formula, not learned: 0, +-0.5,
    +-1, 2, 3, 6 (hard-swish/-sigmoid, GELU), powers of ten (layer-norm eps) and 1/sqrt(k)
    (attention scales)."""
    a = abs(v)
    if any(abs(v - c) < 1e-6 for c in (0.0, 0.5, -0.5, 1.0, -1.0, 2.0, 3.0, 6.0)):
        return True
    if a > 0 and abs(math.log10(a) - round(math.log10(a))) < 1e-6:
        return True
    return a > 0 and abs(1.0 / (a * a) - round(1.0 / (a * a))) < 1e-3 and a <= 1.0


def buffers_to_parameters(gm: Any) -> dict[str, int]:
    """Turn the weight-like float buffers of an onnx2torch ``GraphModule`` into parameters.

    A buffer qualifies when it is floating point and every user in the fx graph is an
    Add/Mul/Sub (``OnnxBinaryMathOperation``) or a MatMul/Gemm, and either has more than one
    element (linear weights, biases, layer-norm gamma/beta, per-channel scales) or is a scalar
    used only by Add/Mul/Sub whose value is not a formula constant (:func:`_is_fixed_constant`):
    PP-LCNetV3's learnable-affine scale/bias pairs (values like 1.21 / 0.47) are learned in
    PaddleOCR and stay learnable here. Divisors, Pow exponents, eps and integer shape tensors
    stay buffers; BatchNorm running statistics are not fx ``get_attr`` users and stay buffers.
    Returns counts {"tensors", "scalars"}.
    """
    import torch

    mods = dict(gm.named_modules())
    counts = {"tensors": 0, "scalars": 0}
    for node in gm.graph.nodes:
        if node.op != "get_attr":
            continue
        owner_name, _, attr = node.target.rpartition(".")
        owner = mods[owner_name] if owner_name else gm
        if attr not in owner._buffers:
            continue
        buf = owner._buffers[attr]
        if buf is None or not buf.is_floating_point() or not node.users:
            continue
        users = [mods[u.target] if u.op == "call_module" else None for u in node.users]
        if not all(type(m).__name__ in _TRAINABLE_USERS for m in users):
            continue
        if buf.numel() == 1:
            ops = {getattr(getattr(m, "math_op_function", None), "__name__", "") for m in users}
            if not ops <= {"add", "mul", "sub"} or _is_fixed_constant(float(buf.reshape(-1)[0])):
                continue
            kind = "scalars"
        else:
            kind = "tensors"
        del owner._buffers[attr]
        owner.register_parameter(attr, torch.nn.Parameter(buf.detach().clone()))
        counts[kind] += 1
    return counts


@dataclass
class ModelSpec:
    """Everything needed to rebuild a converted network (weights come from the state_dict).

    ``charset`` is None for a detector or a recogniser with the shipped head."""

    model_set: str
    stage: str
    source_sha256: str
    charset: list[str] | None = None
    spec_version: int = SPEC_VERSION
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# module attribute <- ONNX input index, for the ops whose converter absorbs initializers
_ABSORBED = {
    "Conv1d": {1: "weight", 2: "bias"},
    "Conv2d": {1: "weight", 2: "bias"},
    "ConvTranspose2d": {1: "weight", 2: "bias"},
    "BatchNorm1d": {1: "weight", 2: "bias", 3: "running_mean", 4: "running_var"},
    "BatchNorm2d": {1: "weight", 2: "bias", 3: "running_mean", 4: "running_var"},
}


def initializer_map(gm: Any, model: Any) -> dict[str, str]:
    """ONNX initializer name -> ``gm.state_dict()`` key, for every tensor the torch module owns.

    Mirrors onnx2torch's construction: one child module per ONNX node in graph order (after the
    ``initializers`` container), absorbed Conv/BN weights by input position, other initializer
    inputs as ``initializers.onnx_initializer_{k}`` with k counting every use in order (hence
    :func:`unshare_initializers`). Raises if any state_dict entry (BN's
    ``num_batches_tracked`` aside) is left without an ONNX source."""
    inits = {i.name for i in model.graph.initializer}
    children = [(n, m) for n, m in gm.named_children() if n != "initializers"]
    nodes = list(model.graph.node)
    if len(children) != len(nodes):
        raise RuntimeError(f"{len(children)} torch modules for {len(nodes)} ONNX nodes")
    out: dict[str, str] = {}
    k = 0
    for (name, mod), node in zip(children, nodes, strict=True):
        prefix, inner = name, mod
        if type(mod).__name__ == "Sequential":  # asymmetric pads: (pad module, conv/pool)
            hits = [(i, m) for i, m in enumerate(mod) if type(m).__name__ in _ABSORBED]
            if len(hits) == 1:
                prefix, inner = f"{name}.{hits[0][0]}", hits[0][1]
        absorbed = _ABSORBED.get(type(inner).__name__)
        if absorbed is not None:
            for idx, attr in absorbed.items():
                if idx < len(node.input) and node.input[idx] in inits:
                    out[node.input[idx]] = f"{prefix}.{attr}"
        for value in mod.onnx_mapping.inputs:
            if value in inits:
                out[value] = f"initializers.onnx_initializer_{k}"
                k += 1
    owned = {key for key in gm.state_dict() if not key.endswith("num_batches_tracked")}
    missing = owned - set(out.values())
    if missing:
        raise RuntimeError(f"state_dict entries without an ONNX initializer: {sorted(missing)[:5]}")
    return out


def _torch_module_class() -> type:
    import torch

    class PPOCRNet(torch.nn.Module):
        """Converted PP-OCR network. ``logits(x)`` returns the pre-activation output;
        ``forward(x)`` the same thing as the shipped ONNX (sigmoid map / softmax steps).
        ``onnx_graph`` (the fixed ONNX, activation included) and ``onnx_names`` (initializer
        -> state_dict key of ``net``) are kept for :func:`export_onnx`."""

        def __init__(self, net: torch.nn.Module, spec: ModelSpec) -> None:
            super().__init__()
            self.net = net
            self.spec = spec
            self.stage = spec.stage

        def logits(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.net(x)
            return torch.sigmoid(y) if self.stage == "det" else torch.softmax(y, dim=-1)

    return PPOCRNet


def prepare_onnx(
    model_set: str, stage: Stage, charset: list[str] | None = None, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """Load the shipped ONNX and apply every graph fix except the activation cut.

    Returns (ModelProto with the final Sigmoid/Softmax still in place, report). Deterministic:
    the same inputs give the same graph, initializer names and head initialisation."""
    import onnx

    path = source_path(model_set, stage)
    model = onnx.load(str(path))
    recipe = RECIPES.get((model_set, stage), {})
    report: dict[str, Any] = {"source": str(path), "source_sha256": _sha256(path)}
    if recipe.get("fix_rec_height"):
        fix_input_height(model, REC_HEIGHT)
        report["fixed_height"] = REC_HEIGHT
    if recipe.get("slim"):
        import onnxslim

        model = onnxslim.slim(model)
        report["slim"] = True
    report["constants_moved"] = constants_to_initializers(model)
    report["initializers_unshared"] = unshare_initializers(model)
    report["same_pads_fixed"] = explicit_same_pads(model)
    if stage == "rec" and charset is not None:
        report["head"] = resize_rec_head(model, shipped_charset(model_set), charset, seed)
    return model, report


def build(model_set: str, stage: Stage, *, charset: list[str] | None = None, seed: int = 0) -> Any:
    """Convert a shipped PP-OCR model to a trainable :class:`PPOCRNet` (in eval mode).

    ``charset``: new recogniser character set (class i = charset[i-1]; a space, if any, must
    be last so the ONNX ``character`` metadata + the pipeline's appended space reproduce it);
    None keeps the shipped head. The returned module carries ``.spec`` (:class:`ModelSpec`) and
    ``.conversion`` (report of the fixes applied)."""
    import copy

    if charset is not None and " " in charset and charset[-1] != " ":
        raise ValueError("the space must be the last class (PaddleOCR's use_space_char layout)")
    o2t = _import_onnx2torch()

    full, report = prepare_onnx(model_set, stage, charset, seed)
    cut = copy.deepcopy(full)
    report["cut"] = cut_final_activation(cut)
    gm = o2t(cut, attach_onnx_mapping=True)
    names = initializer_map(gm, cut)
    report["parameters_from_buffers"] = buffers_to_parameters(gm)
    spec = ModelSpec(
        model_set=model_set,
        stage=stage,
        source_sha256=report["source_sha256"],
        charset=list(charset) if charset is not None else None,
        versions={
            "torch": _dist_version("torch"),
            "onnx": _dist_version("onnx"),
            "onnx2torch": _dist_version("onnx2torch"),
            "onnxslim": _dist_version("onnxslim"),
        },
    )
    net = _torch_module_class()(gm, spec)
    net.conversion = report
    net.onnx_graph = full
    net.onnx_names = names
    return net.eval()


def save(model: Any, path: str | Path) -> str:
    """Write ``{"spec", "state_dict"}`` to ``path`` (torch.save). Returns the file's sha256."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"spec": model.spec.to_dict(), "state_dict": state}, path)
    return _sha256(path)


def load(path: str | Path, *, expected_sha256: str | None = None, map_location: str = "cpu") -> Any:
    """Rebuild the network from the shipped ONNX named in the checkpoint's spec and load the
    saved weights (strict). ``expected_sha256`` (of the checkpoint file) is verified first."""
    import torch

    path = Path(path)
    if expected_sha256 is not None:
        got = _sha256(path)
        if got != expected_sha256:
            raise ValueError(f"{path}: sha256 {got} != expected {expected_sha256}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    spec = ckpt["spec"]
    if spec.get("spec_version") != SPEC_VERSION:
        raise ValueError(f"{path}: spec version {spec.get('spec_version')} != {SPEC_VERSION}")
    src_sha = _sha256(source_path(spec["model_set"], spec["stage"]))
    if src_sha != spec["source_sha256"]:
        raise ValueError(
            f"{path}: built from {spec['model_set']} {spec['stage']} sha256 "
            f"{spec['source_sha256'][:12]}, installed file is {src_sha[:12]}"
        )
    net = build(spec["model_set"], spec["stage"], charset=spec.get("charset"))
    net.load_state_dict(ckpt["state_dict"], strict=True)
    return net.eval()


def load_exported(path: str | Path, *, expected_sha256: str | None = None) -> Any:
    """Rebuild the torch network from an ONNX file written by :func:`export_onnx`
    (``method="weights"``): the spec comes from its metadata (model set, stage, source sha256,
    charset), the weights from its initializers (the inverse of the write-back). So a committed
    ONNX is the only artifact needed for CPU inference *and* further fine-tuning; BatchNorm's
    ``num_batches_tracked`` counters restart at 0."""
    import json

    import onnx
    import torch
    from onnx import numpy_helper

    path = Path(path)
    if expected_sha256 is not None and _sha256(path) != expected_sha256:
        raise ValueError(f"{path}: sha256 {_sha256(path)} != expected {expected_sha256}")
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("export_method") != "weights":
        raise ValueError(f"{path}: not written by export_onnx(method='weights')")
    spec = json.loads(meta["spec"])
    src_sha = _sha256(source_path(spec["model_set"], spec["stage"]))
    if src_sha != spec["source_sha256"]:
        raise ValueError(f"{path}: built from another {spec['model_set']} {spec['stage']} file")
    net = build(spec["model_set"], spec["stage"], charset=spec.get("charset"))
    inits = {i.name: i for i in proto.graph.initializer}
    state = net.net.state_dict()
    with torch.no_grad():
        for name, key in net.onnx_names.items():
            init = inits.get(name) or inits[name + FP16_SUFFIX]  # fp16 storage: cast back
            arr = numpy_helper.to_array(init).astype(np.float32)
            state[key].copy_(torch.from_numpy(arr.copy()).reshape(state[key].shape))
    return net.eval()


def _metadata(model: Any, method: str) -> dict[str, str]:
    import json

    meta = {
        "model_set": model.spec.model_set,
        "stage": model.stage,
        "source_sha256": model.spec.source_sha256,
        "export_method": method,
        "spec": json.dumps(model.spec.to_dict(), ensure_ascii=False),
    }
    if model.spec.charset is not None:
        meta["character"] = "\n".join(c for c in model.spec.charset if c != " ")
    return meta


FP16_SUFFIX = "__fp16"


def fp16_storage(proto: Any) -> int:
    """Store the weight matrices/kernels (float32 initializers with >= 2 dims) of an ONNX graph
    as float16, each followed by a ``Cast`` back to float32 under its old name (in place;
    returns the number converted). onnxruntime's constant folding (``ORT_ENABLE_ALL``, what
    ``workers.pipeline.models.create_session`` sets) evaluates those casts once when the session
    is created, so inference runs the float32 graph at float32 speed; only the file halves. 1-D
    tensors (biases, BatchNorm statistics) stay float32. Tensors outside the float16 range are
    left alone. :func:`load_exported` reads such a file back."""
    import onnx
    from onnx import helper, numpy_helper

    casts, done = [], 0
    for init in proto.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or len(init.dims) < 2:
            continue
        arr = numpy_helper.to_array(init)
        if not np.isfinite(arr).all() or np.abs(arr).max() > 60000.0:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16), name + FP16_SUFFIX))
        casts.append(
            helper.make_node(
                "Cast", [name + FP16_SUFFIX], [name], to=onnx.TensorProto.FLOAT, name=f"{name}_cast"
            )
        )
        done += 1
    nodes = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(casts + nodes)
    return done


def export_onnx(
    model: Any,
    path: str | Path,
    *,
    method: str = "weights",
    opset: int = 17,
    storage: str = "fp32",
) -> Path:
    """Write an ONNX file with the contract of the shipped model (sigmoid/softmax included):
    det (N, 3, H, W) -> (N, 1, H, W); rec (N, 3, 48, W) -> (N, T, C); batch and spatial axes
    dynamic. The charset goes to the ``character`` metadata entry (one a line, space excluded,
    as rapidocr's PP-OCRv4 rec stores it), so ``workers.pipeline.models.load_char_list`` reads
    it with ``dict_relpath=None``.

    ``method="weights"`` (default): the fixed shipped graph (:func:`prepare_onnx`) with every
    initializer replaced by the current torch tensor (BN running statistics included). The graph
    is exactly the one onnxruntime already runs, so dynamic shapes and speed are unchanged.
    ``method="trace"``: ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``). Tracing
    an onnx2torch module freezes every Shape-derived size into a constant, so the SVTR necks of
    the v4/v5/v6-small recognisers only work at the traced width; kept for architecture changes
    the weight write-back cannot express (new modules), and only safe for fully convolutional
    graphs (the detectors, v6-tiny rec): check the output at several sizes.

    ``storage="fp16"``: weight matrices stored as float16 (:func:`fp16_storage`; half the file,
    same float32 inference after onnxruntime's constant folding)."""
    import copy

    import onnx
    import torch
    from onnx import numpy_helper

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if method == "weights":
        proto = copy.deepcopy(model.onnx_graph)
        state = model.net.state_dict()
        for init in proto.graph.initializer:
            key = model.onnx_names.get(init.name)
            if key is None:
                continue
            old = numpy_helper.to_array(init)
            new = state[key].detach().cpu().numpy().astype(old.dtype).reshape(old.shape)
            init.CopyFrom(numpy_helper.from_array(new, init.name))
    elif method == "trace":
        was_training = model.training
        model.eval()
        if model.stage == "det":
            dummy = torch.zeros(1, 3, 64, 96)
            dyn = {"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}}
        else:
            dummy = torch.zeros(1, 3, REC_HEIGHT, 320)
            dyn = {"x": {0: "n", 3: "w"}, "y": {0: "n", 1: "t"}}
        with torch.no_grad():
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                input_names=["x"],
                output_names=["y"],
                dynamic_axes=dyn,
                opset_version=opset,
                dynamo=False,
            )
        model.train(was_training)
        proto = onnx.load(str(path))
    else:
        raise ValueError(f"unknown export method {method!r}")
    if storage not in ("fp32", "fp16"):
        raise ValueError(f"unknown storage {storage!r}")
    if storage == "fp16":
        fp16_storage(proto)
    del proto.metadata_props[:]
    for k, v in {**_metadata(model, method), "storage": storage}.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(proto, str(path))
    return path
