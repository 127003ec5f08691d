"""fusion_view: which ONNX nodes each engine layer was built from, for TensorRT imports and live runs alike."""

from __future__ import annotations

import workbench as wb
from workbench.results.layers import fusion_view, layer_table
from workbench.model.samples import sample_path
from workbench.interop.trtexec import import_trtexec


def test_trtexec_fusions_list_their_onnx_nodes_largest_first(fixtures_dir):
    run = import_trtexec(fixtures_dir / "trtexec" / "resnet18-a100-fp16")
    view = fusion_view(run.layers)
    assert len(view) == len(run.layers)
    assert list(view["fused"]) == sorted(view["fused"], reverse=True)
    conv_add_relu = view[view["name"] == "Conv_5 + Add_6 + Relu_7"].iloc[0]
    assert conv_add_relu["fused"] == 3 and conv_add_relu["onnx_nodes"] == ["Conv_5", "Add_6", "Relu_7"]
    reformats = view[view["name"].str.startswith("Reformatting CopyNode")]
    assert len(reformats) and (reformats["fused"] == 0).all()
    fused = view[view["fused"] > 1]
    assert view.attrs["summary"].startswith(
        f"{len({n for ns in view['onnx_nodes'] for n in ns})} ONNX nodes → {len(view)} layers: "
        f"{len(fused)} layers fuse {fused['fused'].sum()} nodes"
    )


def test_model_nodes_no_layer_names_are_listed_as_unmapped():
    model = wb.load_model(sample_path("digits_cnn"))
    names = [n.name for n in model.proto.graph.node]
    layers = layer_table(
        [
            {"name": "first + second", "type": "Conv", "time_ms": 1.0, "onnx_nodes": names[:2]},
            {"name": "third", "type": "Relu", "time_ms": 0.5, "onnx_nodes": names[2:3]},
        ]
    )
    view = fusion_view(layers, model)
    assert view.attrs["unmapped"] == names[3:]
    assert view.iloc[0]["name"] == "first + second" and view.iloc[0]["fused"] == 2
    assert view.attrs["summary"].endswith(f"{len(names) - 3} of the model's {len(names)} nodes are in no layer")
