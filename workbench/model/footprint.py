"""The memory a run of a model will take at given input shapes, sized before a session is made.

ONNX's shape inference (fast, in C++) fixes every intermediate tensor's shape at the input shapes that will run;
walking the nodes in their (topological) order, a tensor lives from the node that makes it to the last node that
reads it, so the largest sum of live tensors is what an executor that frees each tensor after its last use holds at
its peak: ONNX Runtime's CPU memory planner reuses buffers the same way. Intermediates whose shape inference cannot
fix (data-dependent sizes) count as nothing: the estimate is a lower bound, so a refusal is never wrong.
"""

from __future__ import annotations

import math

import numpy as np


def peak_activation_bytes(model, shapes: dict) -> int:
    """The most bytes of intermediate and output tensors alive at once when ``model`` runs at ``shapes`` (input
    name -> shape), the inputs included; 0 when shape inference fails."""
    import onnx
    from onnx import helper

    from .node_cost import _fixed_proto

    try:
        inferred = onnx.shape_inference.infer_shapes(_fixed_proto(model, shapes), data_prop=True)
    except Exception:  # noqa: BLE001 - an operator ONNX's inference rejects: nothing known, nothing refused
        return 0
    graph = inferred.graph
    sizes: dict[str, int] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if not tensor_type.HasField("shape") or None in dims:
            continue
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).itemsize
        except (KeyError, TypeError, ValueError):
            continue
        sizes[value.name] = math.prod(dims) * itemsize
    initializers = {i.name for i in graph.initializer}
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = index
    outputs = {o.name for o in graph.output}
    live = sum(sizes.get(i.name, 0) for i in graph.input if i.name not in initializers)
    peak = live
    for index, node in enumerate(graph.node):
        live += sum(sizes.get(name, 0) for name in node.output if name)
        peak = max(peak, live)
        for name in set(node.input):
            if last_use.get(name) == index and name not in outputs and name not in initializers:
                live -= sizes.get(name, 0)
    return peak
