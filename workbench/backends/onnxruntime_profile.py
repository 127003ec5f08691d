"""ONNX Runtime's profile -> the layer table: which original ONNX nodes each optimized node computes
(:func:`fused_origins`), a layer's name from them (:func:`layer_name`) and the profiling events summarised per node
(:func:`profile_layers`)."""

from __future__ import annotations

import collections
import json
import os
import re

import numpy as np

from ..model.node_cost import precision_label
from ..results.layers import layer_table, layer_shapes_text


def fused_origins(original, optimized_path: str) -> dict[str, list[str]]:
    """Optimized node name -> the original ONNX nodes it computes.

    ORT fuses and renames nodes (``Conv`` + ``Relu`` -> ``FusedConv``; NCHWc nodes are named after one original
    tensor and write renamed ones). Each optimized node claims the original nodes behind its outputs, back to
    tensors that still exist or that several nodes read (those must be materialised); original nodes left
    unclaimed (a residual ``Add`` + ``Relu`` fused as a convolution's epilogue) go to the node that computes
    their first input. Nodes ORT added (layout reorders) map to nothing.
    """
    import onnx

    if not os.path.exists(optimized_path):
        return {}
    nodes = list(original.graph.node)
    producers = {out: node for node in nodes for out in node.output}
    readers = collections.Counter(t for node in nodes for t in node.input)
    graph = onnx.load(optimized_path, load_external_data=False).graph
    # (an fp16 model run in fp32 names them after the cast ORT inserted first: InsertedPrecisionFreeCast_<tensor>_nchwc)
    alias = {
        out: n.name.removesuffix("_nchwc").removeprefix("InsertedPrecisionFreeCast_")
        for n in graph.node
        if n.name.endswith("_nchwc")
        for out in n.output
    }
    # casts ORT inserts where a provider lacks a type stand between a node and the tensor it computed
    # (a node that writes such a cast's input is named after it too: only the Cast itself is inserted)
    inserted = {
        n.name
        for n in graph.node
        if n.op_type in ("ReorderInput", "ReorderOutput")
        or (n.op_type == "Cast" and n.name.startswith("InsertedPrecisionFreeCast_"))
    }
    # views ORT inserts around a fusion (MatMul + Add over 3-D inputs becomes Reshape → Gemm → Reshape): the last one
    # writes the original tensor, but the work is the fused node's
    original_names = {n.name for n in original.graph.node}
    inserted |= {
        n.name
        for n in graph.node
        if n.op_type in ("Reshape", "Squeeze", "Unsqueeze", "Flatten")
        and n.name not in original_names
        and n.input
        and n.input[0] not in producers
    }
    for n in graph.node:
        if n.name in inserted and n.op_type != "ReorderInput" and n.op_type != "ReorderOutput":
            if n.op_type == "Cast" or n.output[0] in producers:
                alias[n.input[0]] = n.output[0]

    def resolve(tensor: str) -> str:
        for _ in range(8):  # chains are short: reorder -> cast
            if tensor not in alias:
                break
            tensor = alias[tensor]
        # the FP32 twin of a tensor whose Cast back to FP16 ORT removed again (a Cast pair cancelled out)
        stripped = tensor.removeprefix("InsertedPrecisionFreeCast_")
        return stripped if stripped != tensor and stripped in producers else tensor

    kept = {resolve(t) for n in graph.node for t in n.output}
    kept |= {i.name for i in graph.initializer} | {i.name for i in graph.input}
    by_name = {n.name: n for n in nodes}
    # a node that kept its name and operator is itself; fusions are found from what is left
    owner = {n.name: n.name for n in graph.node if n.name in by_name and by_name[n.name].op_type == n.op_type}
    # ORT names a fusion "fused <first node>"
    owner.update(
        {
            n.name.removeprefix("fused "): n.name
            for n in graph.node
            if n.name.startswith("fused ") and n.name.removeprefix("fused ") in by_name
        }
    )
    for node in graph.node:
        if node.name in inserted:
            continue
        stack = [resolve(t) for t in node.output]
        while stack:
            producer = producers.get(stack.pop())
            if producer is None or (producer.name in owner and owner[producer.name] != node.name):
                continue
            owner[producer.name] = node.name
            stack.extend(t for t in producer.input if t not in kept and readers[t] == 1)
    for node in nodes:  # original order is topological: an epilogue follows the node it is fused into
        if node.name not in owner:
            first = next((producers[t] for t in node.input if t in producers), None)
            if first is not None and first.name in owner:
                owner[node.name] = owner[first.name]
    origins: dict[str, list[str]] = {n.name: [] for n in graph.node}
    for node in nodes:
        if node.name in owner and node.op_type != "Constant":  # a folded constant is no work of the layer
            origins[owner[node.name]].append(node.name)
    return origins


def executed_shapes(events: list[dict], original, optimized_path: str) -> dict[str, list[int]]:
    """Tensor name -> the shape ONNX Runtime ran it at, for the tensors of ``original`` (a ModelProto) that an
    executed node read or wrote: each kernel event's ``input_type_shape`` / ``output_type_shape`` (one entry per
    present input or output, in order) matched to that node's tensor names in the optimized graph. Weights and
    tensors seen at more than one shape (a loop body's) are left out: the shape is not one fact there."""
    import onnx

    if not os.path.exists(optimized_path):
        return {}
    graph = onnx.load(optimized_path, load_external_data=False).graph
    weights = {i.name for i in original.graph.initializer}
    wanted = {t for n in original.graph.node for t in (*n.input, *n.output) if t and t not in weights}
    wanted |= {v.name for v in original.graph.input if v.name not in weights}
    io = {n.name: ([t for t in n.input if t], [t for t in n.output if t]) for n in graph.node}
    shapes: dict[str, list[int]] = {}
    varied: set[str] = set()
    for ev in events:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        names = io.get(ev["name"][: -len("_kernel_time")])
        args = ev.get("args", {})
        if names is None:
            continue
        for tensors, recorded in zip(names, (args.get("input_type_shape"), args.get("output_type_shape"))):
            dims = [next(iter(d.values())) for d in recorded or [] if d]
            if len(dims) != len(tensors):  # an input that is not a tensor, or an optional one left out
                continue
            for tensor, shape in zip(tensors, dims):
                if tensor in wanted:
                    if shapes.setdefault(tensor, list(shape)) != list(shape):
                        varied.add(tensor)
    return {t: s for t, s in shapes.items() if t not in varied}


def layer_name(node: str, origins: list[str]) -> str:
    """A layer's name from the ONNX nodes it computes, as TensorRT names fusions (``conv + relu``), not ONNX
    Runtime's node name (an NCHWc node is named after a tensor: ``…/Relu_output_0_nchwc``); nodes ORT added keep
    its name. Long fusions: ``first + … + last (N nodes)``."""
    if not origins:
        return node
    if len(origins) <= 3:
        return " + ".join(origins)
    return f"{origins[0]} + … + {origins[-1]} ({len(origins)} nodes)"


def node_events(events: list[dict]) -> list[dict]:
    """The profile's node executions (``<node>_kernel_time``), in file order: the windows GPU work is given to."""
    return [ev for ev in events if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time")]


def gpu_attribution(events: list[dict], start_ns: int, trace, runs: int):
    """CUPTI's records of the profiled pass given to the nodes that launched them.

    ``start_ns``: the profile's start on the host's system clock (``get_profiling_start_time_ns``; an event's
    ``ts`` and ``dur`` are microseconds from it); ``runs``: the profiled inferences at the end of the profile (the
    warm-up ones before them were not recorded). Returns ``(per node event, GpuTime)``: the
    :class:`~workbench.backends.cupti.NodeGpu` of each index of :func:`node_events`, and the run's figures per
    inference.
    """
    from .cupti import Window, attribute, gpu_time

    def bounds(ev):
        start = start_ns + int(float(ev.get("ts", 0) or 0) * 1000)
        return start, start + int(float(ev.get("dur", 0) or 0) * 1000)

    nodes = node_events(events)
    windows = [Window(i, int(ev.get("tid", 0) or 0), *bounds(ev)) for i, ev in enumerate(nodes)]
    sessions = [bounds(ev) for ev in events if ev.get("cat") == "Session" and ev.get("name") == "model_run"]
    found = attribute(trace, windows, sessions[-runs:] if sessions else None)
    n = min(runs, len(sessions)) if sessions else runs
    return found.nodes, gpu_time(found.in_runs, n, found, trace.clock_offset_ns, found.span_ns)


def profile_layers(
    events: list[dict],
    runs: int,
    origins: dict[str, list[str]] | None = None,
    warmup_runs: int = 0,
    gpu: dict | None = None,
):
    """ONNX Runtime profiling events -> the shared layer table (one row per executed node, in execution order).

    ``name`` is :func:`layer_name` (the ONNX nodes computed); the extra column ``ort_node`` keeps ONNX Runtime's
    node name.

    ``gpu`` (from :func:`gpu_attribution`): the GPU work each node event launched. With it ``time_ms`` and
    ``median_ms`` are the node's GPU time per inference (its kernels, memcpys and memsets), ``host_ms`` keeps the
    profiler's host time, ``kernels`` counts GPU activities per inference and ``kernel_names`` lists them, most
    GPU time first. A node that launched nothing (shape arithmetic on the host) has GPU time 0.

    The profile holds ``warmup_runs + runs`` inferences; the warm-up ones are dropped. A control-flow node's
    (If/Loop/Scan) time is its own: its bodies' nodes are rows of their own, so their time is taken out of it (ORT
    times the If around them; counted in both, the layers would sum to more than the inference).
    """
    origins = origins or {}
    rows: dict[str, dict] = {}
    kernels = node_events(events)
    for i, (ev, own) in enumerate(zip(kernels, _own_durations(kernels))):
        args = ev.get("args", {})
        name = ev["name"][: -len("_kernel_time")]
        row = rows.setdefault(
            name,
            {
                "name": layer_name(name, origins.get(name, [])),
                "ort_node": name,
                "type": args.get("op_name", ""),
                "durations": [],
                "input_shapes": _shapes(args.get("input_type_shape")),
                "output_shapes": _shapes(args.get("output_type_shape")),
                "precision": _precision(args.get("output_type_shape")),
                "activation_bytes": int(args.get("output_size", 0) or 0),
                "weight_bytes": int(args.get("parameter_size", 0) or 0),
                "tactic": args.get("provider", ""),
                "onnx_nodes": origins.get(name, []),
                "gpu": [],
            },
        )
        row["durations"].append(own / 1000.0)
        if gpu is not None:
            row["gpu"].append(gpu.get(i))
    table = []
    for row in rows.values():
        occurrences = row.pop("gpu")
        per_run = np.array(row.pop("durations"), dtype=float)
        # a node inside a loop can run several times per inference: report time per inference
        calls_per_run = max(1, round(per_run.size / max(runs + warmup_runs, 1)))
        skip = warmup_runs * calls_per_run
        used = ((per_run.size - skip) // calls_per_run) * calls_per_run
        per_inference = per_run[skip : skip + used].reshape(-1, calls_per_run).sum(1)
        row.update(
            time_ms=float(per_inference.mean()),
            median_ms=float(np.median(per_inference)),
            p90_ms=float(np.percentile(per_inference, 90)),
            calls=int(per_inference.size),
        )
        if gpu is not None:
            recorded = occurrences[skip : skip + used]
            ns = np.array([g.ns if g else 0 for g in recorded], dtype=float).reshape(-1, calls_per_run).sum(1)
            names: dict[str, int] = {}
            for g in recorded:
                for kernel, t in (g.names if g else {}).items():
                    names[kernel] = names.get(kernel, 0) + t
            row.update(
                host_ms=row["time_ms"],
                time_ms=float(ns.mean()) / 1e6 if ns.size else 0.0,
                median_ms=float(np.median(ns)) / 1e6 if ns.size else 0.0,
                p90_ms=float(np.percentile(ns, 90)) / 1e6 if ns.size else 0.0,
                kernels=sum(g.count for g in recorded if g) / max(1, ns.size),
                kernel_names=sorted(names, key=names.get, reverse=True),
            )
        table.append(row)
    return layer_table(table)


#: ONNX Runtime kernels that run subgraphs: their events enclose the events of their bodies' nodes.
CONTROL_FLOW_OPS = ("If", "Loop", "Scan")


def _own_durations(kernels: list[dict]) -> list[float]:
    """Each kernel event's duration (µs) less the events nested in it (a control-flow node's bodies), in order."""
    own = [float(ev.get("dur", 0) or 0) for ev in kernels]
    open_by_thread: dict = {}  # thread -> stack of (end time, index) of the control-flow events still open
    for i in sorted(range(len(kernels)), key=lambda k: float(kernels[k].get("ts", 0) or 0)):
        ev = kernels[i]
        start = float(ev.get("ts", 0) or 0)
        stack = open_by_thread.setdefault((ev.get("pid"), ev.get("tid")), [])
        while stack and stack[-1][0] <= start:
            stack.pop()
        if stack:
            own[stack[-1][1]] -= float(ev.get("dur", 0) or 0)
        if ev.get("args", {}).get("op_name") in CONTROL_FLOW_OPS:
            stack.append((start + float(ev.get("dur", 0) or 0), i))
    return [max(0.0, d) for d in own]


def _shapes(type_shapes) -> str:
    """ORT writes ``[{"float": [1, 3, 8, 8]}, ...]``."""
    return layer_shapes_text([next(iter(d.values())) for d in type_shapes or [] if d])


def _precision(type_shapes) -> str:
    for d in type_shapes or []:
        for t in d:
            return precision_label(t)
    return ""


#: How ONNX Runtime's profiler starts each event: its fields in a fixed order, then the node's name, unescaped.
_EVENT_HEAD = re.compile(
    r'(?:^|\n)\{"cat" : "(?P<cat>[^"\n]*)","pid" :(?P<pid>-?\d+),"tid" :(?P<tid>-?\d+),"dur" :(?P<dur>-?\d+),'
    r'"ts" :(?P<ts>-?\d+),"ph" : "(?P<ph>[^"\n]*)","name" :"'
)
_ARGS_MARK = '","args" : '


def read_profile(text: str) -> list[dict]:
    """The events of an ONNX Runtime profile (``end_profiling()``'s file).

    ONNX Runtime writes node names into the JSON unescaped, so a ``"``, ``\\`` or a line break in a node name (any
    name an exporter wrote) makes the file invalid JSON. A valid file is read as JSON; otherwise each event is cut
    at the fixed text ONNX Runtime writes around it (``{"cat" : ..., "name" :"`` and ``","args" : {...}}``): the
    name is everything in between, taken as data, and an event that still does not read is skipped.
    """
    try:
        events = json.loads(text)
        if isinstance(events, list):
            return [e for e in events if isinstance(e, dict)]
    except ValueError:
        pass
    heads = list(_EVENT_HEAD.finditer(text))
    events = []
    for i, head in enumerate(heads):
        body = text[head.end() : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        body = body.rstrip().removesuffix("]").rstrip().removesuffix(",").rstrip()
        if not body.endswith("}"):
            continue
        body = body[:-1]  # the event's closing brace
        mark = body.rfind(_ARGS_MARK)
        while mark >= 0:  # the name may itself hold '","args" : ': the args are the last part that reads
            try:
                args = json.loads(body[mark + len(_ARGS_MARK) :])
            except ValueError:
                mark = body.rfind(_ARGS_MARK, 0, mark)
                continue
            if isinstance(args, dict):
                event = {k: head[k] for k in ("cat", "ph")}
                event.update({k: int(head[k]) for k in ("pid", "tid", "dur", "ts")})
                events.append({**event, "name": body[:mark], "args": args})
            break
    return events
