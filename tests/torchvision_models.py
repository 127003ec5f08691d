"""torchvision's architectures with random weights (``weights=None``: nothing is downloaded), exported to ONNX once
and cached under ``<repo>/.cache/torchvision`` (git-ignored), with the figures torchvision publishes for them: the
``_meta`` of each weights enum holds ``num_params`` and ``_ops`` (GFLOPs as torchvision counts them: multiply-adds)
offline.

torchvision's wheels on PyPI are CUDA builds; beside the CPU build of torch this project pins, their C++ operators do
not load (:func:`real_models.torchvision_ops_declared`), and none of these models needs them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from real_models import REPO, torchvision_ops_declared

CACHE = REPO / ".cache" / "torchvision"
#: The held-out architectures: a residual CNN, two mobile CNNs (squeeze-excitation, hard-swish / SiLU), a ConvNeXt,
#: and two vision transformers (global attention, shifted windows).
ARCHITECTURES = ("resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vit_b_16", "swin_t")


def published(name: str) -> dict:
    """torchvision's documented figures for ``name``: ``params`` (count) and ``gflops`` (its ``_ops``, which count a
    multiply-add once)."""
    torchvision_ops_declared()
    models = pytest.importorskip("torchvision.models", reason="torchvision's published table needs torchvision")
    meta = models.get_model_weights(name).DEFAULT.meta
    return {"params": int(meta["num_params"]), "gflops": float(meta["_ops"])}


def torchvision_onnx(name: str, batch: int = 1) -> Path:
    """``name`` with random weights as ONNX at ``batch``×3×224×224 (a fixed shape, opset 17), its parameters as
    torch holds them: BatchNormalization kept as a node of its own (the exporter's inference peephole would fold it
    into the convolution before it, changing the parameters the file has), nothing folded, and attention as the
    module computes it with gradients on (the fused fast path of ``nn.MultiheadAttention`` has no ONNX export)."""
    target = CACHE / f"{name}-b{batch}.onnx"
    if target.is_file():
        return target
    torch = pytest.importorskip("torch", reason="exporting torchvision's models needs torch")
    torchvision_ops_declared()
    models = pytest.importorskip("torchvision.models", reason="exporting torchvision's models needs torchvision")
    torch.manual_seed(0)
    model = models.get_model(name, weights=None).eval()
    with torch.no_grad():  # no two parameters equal (norms start at ones and zeros): the exporter merges equal ones
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 1e-3)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        torch.onnx.export(
            model,
            (torch.zeros(batch, 3, 224, 224),),
            str(partial),
            input_names=["x"],
            output_names=["logits"],
            opset_version=17,
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
            dynamo=False,
        )
        os.replace(partial, target)
    return target


def exported_buffers(name: str, path: Path) -> int:
    """Elements of the torch buffers (running statistics, Swin's relative position index) the export at ``path``
    stores as initializers under their own names beside the parameters: state the model holds but does not learn
    (what the exporter writes as Constant nodes instead is counted with the constants)."""
    import onnx

    torchvision_ops_declared()
    models = pytest.importorskip("torchvision.models")
    stored = {i.name for i in onnx.load(str(path), load_external_data=False).graph.initializer}
    return sum(b.numel() for n, b in models.get_model(name, weights=None).named_buffers() if n in stored)
