"""Keeping nodes of an already calibrated Q/DQ graph in higher precision, by editing its Q/DQ pairs.

ModelOpt's INT8/FP8 graphs quantize a tensor by a ``QuantizeLinear -> DequantizeLinear`` pair after its producer
(activations) or on the weight itself; every scale comes from one calibration pass over the FP32 graph, per tensor.
A node is kept in higher precision by reading the tensor *before* the pair instead of the pair's output: the node
then computes on the unquantized tensor in the graph's high-precision dtype, exactly as if the pair had not been
inserted for it, while every other reader keeps its quantized input and the calibrated scales stay untouched. Pairs
no node reads any more are dropped. This is how :mod:`workbench.analysis.sensitivity` makes each candidate plan
without calibrating again (a recipe applied with ``exclude_nodes`` asks ModelOpt for the same thing, calibrating).
"""

from __future__ import annotations

from ..errors import WorkbenchError


def keep_unquantized(proto, nodes) -> object:
    """A copy of the Q/DQ ``proto`` (``onnx.ModelProto``) where the nodes named in ``nodes`` read unquantized
    inputs: every input fed by ``DequantizeLinear(QuantizeLinear(x))`` is rewired to ``x``; Q/DQ nodes left
    unread are removed. A name that is not a node of the graph is an error (the plan would silently differ)."""
    import onnx

    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    graph = edited.graph
    wanted = set(nodes)
    missing = wanted - {n.name for n in graph.node}
    if missing:
        raise WorkbenchError(
            f"Node '{sorted(missing)[0]}' is not in the quantized graph ({len(missing)} missing): the plan names "
            "nodes of another model; run the search again on this model."
        )
    producer = {out: n for n in graph.node for out in n.output}

    def unquantized(tensor: str) -> str:
        dq = producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return tensor
        q = producer.get(dq.input[0])
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else tensor

    for node in graph.node:
        if node.name in wanted:
            for i, tensor in enumerate(node.input):
                node.input[i] = unquantized(tensor)
    _drop_unread_qdq(graph)
    return edited


def _drop_unread_qdq(graph) -> None:
    """Remove DequantizeLinear (then QuantizeLinear) nodes whose outputs nothing reads, and the constants (scales,
    zero points, quantized weights) only they read."""
    outputs = {o.name for o in graph.output}
    dropped: set[str] = set()
    for op in ("DequantizeLinear", "QuantizeLinear"):
        read = {i for n in graph.node for i in n.input} | outputs
        for n in [n for n in graph.node if n.op_type == op and not any(o in read for o in n.output)]:
            dropped.update(n.input)
            graph.node.remove(n)
    read = {i for n in graph.node for i in n.input} | outputs | {i.name for i in graph.input}
    for tensor in [t for t in graph.initializer if t.name in dropped and t.name not in read]:
        graph.initializer.remove(tensor)
