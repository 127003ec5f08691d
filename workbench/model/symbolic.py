"""ONNX Runtime's symbolic shape inference, run without writing into the user's folder.

``SymbolicShapeInference.infer_shapes`` ends, where shapes stay open, by saving the graph into the working directory
(``sym_shape_infer_temp.onnx`` and its weights) and raising; :func:`symbolic_shapes` runs the same loop less that
last step, so the shapes it did find count and nothing is written."""

from __future__ import annotations

import logging


def symbolic_shapes(proto, *, guess_output_rank: bool = True):
    """A copy of ``proto`` (a ``ModelProto``) with the shapes ONNX Runtime's symbolic inference finds (symbols merged
    where it can, dimensions it cannot find left open). Raises whatever the library raises on a graph it rejects."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    library_log = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    level = library_log.level
    library_log.setLevel(logging.ERROR)  # "Unable to determine if …, treat as equal": its own guesses, not ours to show
    try:
        inference = SymbolicShapeInference(
            int_max=2**31 - 1, auto_merge=True, guess_output_rank=guess_output_rank, verbose=0
        )
        inference._preprocess(proto)
        while inference.run_:
            inference._infer_impl()
        inference._update_output_from_vi()
        return inference.out_mp_
    finally:
        library_log.setLevel(level)
