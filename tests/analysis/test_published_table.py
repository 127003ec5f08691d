"""torchvision's published table as a test: parameters and FLOPs of six architectures the workbench never saw
(exported with random weights, no download; tests/torchvision_models.py caches the exports under .cache/).

torchvision documents each model's ``num_params`` and ``_ops`` (GFLOPs counted as multiply-adds of the matrix
operators: convolutions, linear layers, attention products). The workbench counts a multiply-add as 2 FLOPs and also
counts elementwise work, normalizations and bias additions, so its matrix operators' FLOPs are held against
2 × ``_ops`` within 3%.
"""

from __future__ import annotations

import math

import pytest
from onnx import AttributeProto
from torchvision_models import ARCHITECTURES, exported_buffers, published, torchvision_onnx

import workbench as wb
from workbench.model.node_cost import model_work


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_parameters_and_flops_match_torchvision_published_table(name):
    path = torchvision_onnx(name)
    model = wb.load_model(path)
    table = published(name)
    # every value the file stores is counted once: the learned parameters (torchvision's figure), the buffers
    # torch exports beside them, and the constants the trace writes as Constant nodes (scalars, shape vectors)
    constants = sum(
        math.prod(a.t.dims)  # a scalar's dims are (): one value
        for n in model.proto.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.type == AttributeProto.TENSOR
    )
    assert model.parameters == table["params"] + exported_buffers(name, path) + constants
    nodes = model_work(model, {"x": (1, 3, 224, 224)}).nodes
    live = nodes[~nodes["folded"].astype(bool)]
    assert live["flops"].notna().all(), live.loc[live["flops"].isna(), ["node", "note"]].head().to_dict("records")
    matrix = float(live.loc[live["matrix"].astype(bool), "flops"].sum())
    assert matrix == pytest.approx(2e9 * table["gflops"], rel=0.03)
