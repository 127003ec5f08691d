CELLS = [
("md", """
# Quickstart: from an ONNX file to per-layer timing

**What this teaches:** how to load an ONNX model, profile it on the best backend this machine has, and read
its per-layer timing and memory.

The workbench picks **TensorRT** when it is installed and a GPU is present (an NGC container), and otherwise
**ONNX Runtime on the CPU** — it says which and why. Everything below runs either way.
"""),
("code", """
import workbench as wb
from workbench.samples import sample_path

model = wb.load_model(sample_path("resnet_mini"))   # or wb.load_model("path/to/your.onnx")
model
"""),
("md", """
Loading validates the model (ONNX checker and shape inference) and summarises it: inputs with their dynamic
dimensions by name, operators, parameters, and a content hash that covers external weights.

## Profile it
`wb.profile` builds an engine (a TensorRT plan, or an ONNX Runtime session), times whole inferences, then runs
a separate profiled pass for the per-layer table. The batch dimension is dynamic, so we choose a shape.
"""),
("code", """
config = wb.BuildConfig(shapes=wb.parse_shapes("input:1x3x128x128"), iterations=50)
run = wb.profile(model, backend="auto", config=config)
run
"""),
("md", """
## Where the time goes
The per-layer chart shows the slowest layers (hover for the layer type, precision, kernel and the ONNX nodes
it came from); the rest are summed as "other".
"""),
("code", "wb.charts.layer_timing(run, top=15)"),
("code", "wb.charts.time_by_type(run)"),
("md", "## Memory per layer: what each layer writes (activations) and the weights it reads"),
("code", "wb.charts.layer_memory(run, top=15)"),
("md", "## Latency distribution"),
("code", "wb.charts.latency_histogram(run)"),
("md", "## The layer table (the same columns for every backend and for imported trtexec results)"),
("code", """
run.layers.sort_values("time_ms", ascending=False).head(10)[
    ["name", "type", "precision", "time_ms", "time_pct", "output_shapes", "onnx_nodes"]]
"""),
("md", """
## Try this
- Change the batch in `shapes` to 8: how do latency and throughput change?
- Profile `sample_path("transformer_encoder")` with `shapes=wb.parse_shapes("input_ids:1x128")`.
- Open `01_workbench.ipynb` for the interactive panel (precision toggles, history, comparisons).
"""),
]
