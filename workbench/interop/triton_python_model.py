"""The Triton Python-backend model a Python-flavour repository serves (copied as ``<model>/1/model.py``).

Triton's Python-backend stub imports this file, never the workbench: it reads ``engine.json`` beside it and runs the
run's own engine on the batch Triton's scheduler formed — ONNX Runtime with the run's execution providers and graph
optimization level on ``model.onnx``. A model with a batch dimension gets every request of an execution concatenated
along it and run once (that is what dynamic batching buys), then split back per request.

Tensors cross between Triton and numpy through DLPack, not ``as_numpy()`` / ``Tensor(name, array)``: the stubs of
the ``nvidia-pytriton`` wheel bridge numpy with a pybind11 that predates numpy 2 and reads numpy 2 arrays as
zero-stride inputs and zero-byte outputs (measured: input [1, 2, 3, 4] arrived as [1, 1, 1, 1]); DLPack's layout is
ABI-stable across numpy versions.
"""

import ctypes
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend


# The stub marks a DLPack capsule it consumed "used_dlpack"; numpy's capsule destructor expects "used_dltensor" (the
# DLPack convention) and reports an error for any other name. The name must outlive the capsule: kept here.
_USED = ctypes.c_char_p(b"used_dltensor")
_set_name = ctypes.pythonapi.PyCapsule_SetName
_set_name.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _Capsule:
    """A DLPack capsule with the protocol ``np.from_dlpack`` asks for (a CPU tensor)."""

    def __init__(self, capsule):
        self.capsule = capsule

    def __dlpack__(self, stream=None, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


def _array(tensor) -> np.ndarray:
    return np.from_dlpack(_Capsule(tensor.to_dlpack()))


def _tensor(name: str, array: np.ndarray):
    capsule = np.ascontiguousarray(array).__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    _set_name(capsule, _USED)
    return tensor


class TritonPythonModel:
    """One instance per ``instance_group`` count: each holds its own ONNX Runtime session."""

    def initialize(self, args):
        import onnxruntime as ort

        here = Path(__file__).resolve().parent
        spec = json.loads((here / "engine.json").read_text())
        self.batched = bool(spec["batched"])
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, spec["graph_optimization"])
        opts.log_severity_level = 4
        available = set(ort.get_available_providers())
        providers = [p for p in spec["providers"] if p in available] or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(here / "model.onnx"), opts, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        feeds = [{name: _array(pb_utils.get_input_tensor_by_name(r, name)) for name in self.inputs} for r in requests]
        try:
            per_request = self._run(feeds)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types; each request gets the error
            error = pb_utils.TritonError(
                f"ONNX Runtime failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            )
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        return [pb_utils.InferenceResponse([_tensor(n, v) for n, v in zip(self.outputs, r)]) for r in per_request]

    def _run(self, feeds):
        """Outputs per request: one session run over the concatenated batch when the model batches."""
        if self.batched and len(feeds) > 1:
            sizes = [len(next(iter(f.values()))) for f in feeds]
            joined = {name: np.concatenate([f[name] for f in feeds]) for name in self.inputs}
            results = self.session.run(self.outputs, joined)
            bounds = np.cumsum([0, *sizes])
            return [[r[a:b] for r in results] for a, b in zip(bounds[:-1], bounds[1:])]
        return [self.session.run(self.outputs, f) for f in feeds]

    def finalize(self):
        self.session = None
