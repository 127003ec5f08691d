"""Self-contained HTML reports (plotly embedded once, opens offline)."""

from __future__ import annotations

import html
from pathlib import Path

from . import charts
from .formatting_html import findings_html, note_html, table_html
from ..config import format_shapes
from ..analysis.advice import advise
from ..analysis.checks import checked, roofline_of
from ..analysis.compare import best_runs, format_metrics, layer_diff_html
from ..errors import WorkbenchError
from ..format import human_bytes
from ..results.layers import SHOWN_COLUMNS, nodes_text, typical_ms
from ..results.metrics import summary_rows
from ..results.run import NOT_TIMED
from ..paths import atomic_write
from ..interop.trtexec import command_for_run, onnx_for_run

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;max-width:1200px;color:#222}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em} td,th{padding:.2em .6em;border-bottom:1px solid #eee;vertical-align:top}
.wide{overflow-x:auto} th{text-align:left}
code,pre{background:#f5f5f5;padding:.2em .4em;white-space:pre-wrap;word-break:break-all}
"""


#: Colours of the accuracy verdicts (a broken variant is never shown green).
VERDICT_COLOURS = {"ok": "#1b5e20", "degraded": "#b26a00", "broken": "#b71c1c", "": "#666"}


def verdict_text(acc) -> str:
    """``BROKEN: output 'y': cosine 0.0000 < 0.9 (on 32 seeded random samples ...)``; "not measured" without one."""
    return acc.verdict_text() if acc is not None else "not measured"


def verdict_html(acc, precision: str = "int8", options: dict | None = None) -> str:
    """The verdict as a coloured line; a broken variant gets what to try (``options``: the variant's graph
    options, see :func:`workbench.precision.accuracy.remedies`)."""
    from ..precision.accuracy import remedies

    verdict = acc.verdict if acc is not None else ""
    colour = VERDICT_COLOURS.get(verdict, "#666")
    text = f"<b style='color:{colour}'>Accuracy {html.escape(verdict_text(acc))}</b>"
    if verdict in ("broken", "degraded"):
        text += "<br>Try: " + html.escape("; ".join(remedies(precision, options))) + "."
    return f"<p>{text}</p>"


def compile_rows(run) -> list[tuple[str, str]]:
    """What the compiler reported about a compiled engine (:class:`~workbench.results.run.CompileReport`)."""
    report = run.compiled
    if report is None:
        return []
    compute = f" (compute {report.compute_capability})" if report.compute_capability else ""
    rows = [
        ("Target", f"{report.target}{compute}, {report.compiler}"),
        ("Build time", f"{report.build_seconds:.2f} s" + (" (plan from the engine cache)" if report.cache_hit else "")),
        ("Build phases", ", ".join(report.phases) or "not reported"),
        (
            "Engine layers / ONNX nodes",
            f"{report.engine_layers} layers from {report.onnx_nodes} nodes: "
            f"{report.fused_layers} layers fuse several nodes, "
            f"{len(report.folded_nodes)} node{'' if len(report.folded_nodes) == 1 else 's'} folded away",
        ),
    ]
    for label, value in (
        ("Activation memory (device, per context)", report.activation_memory_bytes),
        ("Weights memory", report.weights_memory_bytes),
        ("Scratch memory (largest layer)", report.scratch_memory_bytes),
        ("Host persistent memory", report.host_persistent_bytes),
        ("Device persistent memory", report.device_persistent_bytes),
    ):
        if value is not None:
            rows.append((label, human_bytes(value)))
    if report.builder_host_peak_text:
        rows.append(("Builder peak host memory", report.builder_host_peak_text))
    if report.folded_nodes:
        rows.append(("ONNX nodes in no layer", nodes_text(report.folded_nodes, shown=12)))
    return rows


def accuracy_rows(run) -> list[dict]:
    acc = run.accuracy
    if acc is None:
        return []
    return [
        {
            "output": o.name,
            "kind": (o.kind + " (proves nothing)") if o.kind == "constant" else o.kind,
            "cosine": f"{o.cosine:.6f}",
            "rel L2 error": "" if o.rel_l2_error is None else f"{o.rel_l2_error:.3g}",
            "max abs error": f"{o.max_abs_error:.3g}",
            "max rel error": f"{o.max_rel_error:.3g}",
            "mean rel error": f"{o.mean_rel_error:.3g}",
            "top-1 agreement": "" if o.top1_agreement is None else f"{100 * o.top1_agreement:.2f}%",
            "mask IoU": "" if o.mask_iou is None else f"{o.mask_iou:.3f}",
            "collapsed": "YES" if o.collapsed else "",
        }
        for o in acc.outputs
    ]


def accuracy_html(run) -> str:
    """Accuracy of a run against FP32 (and against labels when measured), for reports and the panel."""
    acc = run.accuracy
    if acc is None:
        return ""
    parts = []
    if acc.label_accuracy is not None:
        ref = "" if acc.reference_label_accuracy is None else f" (FP32: {100 * acc.reference_label_accuracy:.2f}%)"
        parts.append(f"<p>Accuracy on {acc.samples} labelled samples: <b>{100 * acc.label_accuracy:.2f}%</b>{ref}</p>")
    parts.append(verdict_html(acc, run.precision, run.variant.get("options")))
    data = f": {acc.data}" if acc.data else ""
    parts.append(
        f"<p>Against {acc.reference.upper()} on {acc.samples} samples{html.escape(data)} "
        f"({html.escape(acc.backend)}):</p>"
    )
    if acc.note:
        parts.append(note_html(acc.note))
    parts.append(_records_html(accuracy_rows(run)))
    return "".join(parts)


def _records_html(records: list[dict]) -> str:
    if not records:
        return ""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in records[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in records)
    return f"<table><tr>{head}</tr>{body}</table>"


def figures_html(figures, include_plotlyjs: bool = True) -> str:
    """plotly figures as HTML fragments; the first embeds plotly.js (so the page opens offline), the rest reuse it
    (``include_plotlyjs=False``: the page embedded it already)."""
    return "\n".join(
        fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs and i == 0, config={"displaylogo": False})
        for i, fig in enumerate(figures)
    )


def _run_sections(run, in_run_folder: bool = False) -> str:
    # the model's warnings: it loaded although the ONNX checker complained
    warnings = [str(w) for w in run.model.get("warnings") or ()]
    out = [findings_html(run.findings), *map(note_html, [*run.notes, *warnings])]
    out.append("<h2>Key metrics</h2>" + table_html(summary_rows(run)))
    if run.compiled is not None:
        out.append("<h2>Compiled engine (compiled, not run)</h2>" + table_html(compile_rows(run)))
    if run.accuracy is not None:
        out.append("<h2>Accuracy against FP32</h2>" + accuracy_html(run))
    changes = run.variant.get("changes")
    if changes:
        out.append(
            "<h2>What the precision transform changed</h2>"
            + table_html([(str(k).replace("_", " "), _plain(v)) for k, v in changes.items()])
        )
    rtx = run.compiled is not None and run.compiled.compute_capability
    out.append(
        f"<h2>Equivalent {'tensorrt_rtx' if rtx else 'trtexec'} command</h2>" + _trtexec_html(run, in_run_folder)
    )
    findings = _advice(run)
    if findings:
        out.append("<h2>Advice</h2>" + _records_html(findings))
    return "\n".join(out)


def _plain(value) -> str:
    """A value of the changes record as a reader wants it: ``fp16: 30, fp32: 2`` rather than a Python dict."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        from ..format import fold_messages

        return "; ".join(fold_messages((_plain(v) for v in value), similar=False)) or "none"  # no "; ; ;"
    return str(value)


def _trtexec_html(run, in_run_folder: bool = False) -> str:
    if run.compiled is not None and run.compiled.compute_capability:  # TensorRT-RTX's twin of trtexec (its SDK)
        shapes = format_shapes(run.config.shapes, sep=",")
        path = onnx_for_run(run, in_run_folder=in_run_folder)  # the variant compiled, not the FP32 source
        engine = "engine" if in_run_folder or run.directory is None else run.directory / "engine"
        command = (
            f"tensorrt_rtx --onnx={path} --computeCapabilities={run.compiled.compute_capability} "
            f"--saveEngine={engine}.plan --profilingVerbosity=detailed --exportLayerInfo={engine}.layers.json"
            + (f" --shapes={shapes}" if shapes else "")
        )
        return f"<pre>{html.escape(command)}</pre>"
    # a report saved with its run is written before the run's folder has its final name: its command names the
    # run's files by their names in that folder, and says where to run it
    where = "<p>Run it in this run's folder (the one holding this report).</p>" if in_run_folder else ""
    onnx = run.artifact("onnx") or run.model.get("path")
    if run.source != "import" and onnx and not Path(onnx).is_file():  # an import names the files of its machine
        where += note_html(f"The ONNX file it names, {onnx}, no longer exists: put the model back there to run it.")
    try:
        return where + f"<pre>{html.escape(command_for_run(run, in_run_folder=in_run_folder))}</pre>"
    except WorkbenchError as e:  # a weakly typed import: only TensorRT 10 can build it as it was built
        ten = command_for_run(run, version=10, in_run_folder=in_run_folder)
        return where + note_html(str(e)) + f"<p>TensorRT 10:</p><pre>{html.escape(ten)}</pre>"


def _advice(run) -> list[dict]:
    return [{"severity": f.severity, "finding": f.title, "detail": f.detail, "fix": f.fix} for f in advise(run)]


def _layer_table_html(run, limit: int = 200) -> str:
    if run.timed:
        order = typical_ms(run.layers).sort_values(ascending=False, na_position="last", kind="stable").index
        df = run.layers.loc[order].head(limit).copy()  # by the median: a mean one slow call pulled up is flagged
        cols = list(SHOWN_COLUMNS)
        # the GPU's drill-down (CUPTI): host time beside GPU time, kernels per inference and their names
        cols[cols.index("time_ms") + 1 : cols.index("time_ms") + 1] = [
            c for c in ("host_ms", "kernels", "kernel_names") if c in df.columns
        ]
        if "kernel_names" in df.columns:
            df["kernel_names"] = df["kernel_names"].map(lambda names: nodes_text(names, shown=3))
        note = f"<p>Layer times: {html.escape(run.time_source_label)}.</p>" + (
            f"<p>The {limit} slowest of {len(run.layers)} layers.</p>" if len(run.layers) > limit else ""
        )
    else:  # engine order, and what a compile reports instead of time: tensor formats and streams
        df = run.layers.head(limit).copy()
        compiled = "name type precision output_shapes output_formats stream_id activation_bytes weight_bytes tactic"
        cols = [c for c in [*compiled.split(), "onnx_nodes"] if c in df.columns]
        note = (
            f"<p>{NOT_TIMED}. The first {limit} of {len(run.layers)} layers, in engine order.</p>"
            if len(run.layers) > limit
            else f"<p>{NOT_TIMED}. Layers in engine order.</p>"
        )
    df["onnx_nodes"] = df["onnx_nodes"].map(lambda nodes: nodes_text(nodes, shown=5))
    table = df[cols].to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0)
    return f'{note}<div class="wide">{table}</div>'  # long tactic names scroll inside, not the whole page


def sensitivity_html(record: dict) -> str:
    """The sensitivity section of a plan run: the plan beside the all-low-precision variant, the ranking, the
    candidates (the figures go with the report's charts)."""
    low, plan = record["candidates"][0], record.get("plan")
    top1 = record["budget"]["kind"] == "top1"
    budget = (
        f"top-1 within {record['budget']['value']:g} pt of FP32"
        if top1
        else f"output cosine to FP32 >= {record['budget']['value']:g}"
    )

    def accuracy(c):
        return f"{100 * c['label_accuracy']:.2f}%" if top1 else f"{c['cosine']:.6f}"

    profiled = record.get("profiled") or {}
    ref = record.get("reference") or {}
    columns = "variant|nodes kept in higher precision|accuracy|latency median (search)|latency p50 (profiled run)"
    fp32 = f"{100 * ref['label_accuracy']:.2f}%" if top1 and ref.get("label_accuracy") is not None else "reference"
    rows = [dict(zip(columns.split("|"), ("FP32", "all", fp32, _ms(ref.get("latency_ms")), "")))]
    planned = record.get("plan_precision") or record["precision"]
    plan_label = "plan" if planned == record["precision"] else f"plan ({planned}: no {record['precision']} node left)"
    for what, c, key in ((f"all {record['precision']}", low, "all_low"), (plan_label, plan, "plan")):
        if c is not None:
            profiled_ms = _ms((profiled.get(key) or {}).get("p50_ms"))
            row = (what, str(len(c["kept_nodes"])), accuracy(c), _ms(c.get("latency_ms")), profiled_ms)
            rows.append(dict(zip(columns.split("|"), row)))
    intro = (
        f"<p>Budget: <b>{html.escape(budget)}</b>, measured on {record['samples']} evaluation samples; "
        f"{len(record['scores'])} groups ({html.escape(record['group_by'])}) ranked, {len(record['candidates'])} "
        f"plans measured, {record['variants_built']} ModelOpt variants made, {record['seconds']:.1f} s. Latency: "
        f"{html.escape(str((record.get('reference') or {}).get('backend') or 'onnxruntime'))}, median of one "
        "evaluation sample, FP32 and both variants timed alternately in one session; accuracy: ONNX Runtime "
        "(CPU).</p>"
    )
    verdict = [note_html(record["verdict"]["text"])] if record.get("verdict") else []
    parts = [*verdict, intro, _records_html(rows)]
    parts += [note_html(n) for n in record.get("notes", ())]
    if plan is not None:
        parts.append(
            "<p>Nodes kept in higher precision: <code>"
            + html.escape(", ".join(plan["kept_nodes"]) or "none")
            + "</code></p>"
        )
    ranking = [
        {
            "rank": f"{s['rank']}=" if s.get("tie") else str(s["rank"]),
            "group (node, op types)": s.get("label") or s["group"],
            "nodes": len(s["nodes"]),
            "error added (dB)": "" if s.get("added_db") is None else f"{s['added_db']:.1f}",
            "worst quantizer SNR (dB)": "" if s.get("quant_snr_db") is None else f"{s['quant_snr_db']:.1f}",
            "loss if dropped from the plan": ""
            if s["loss"] is None
            else (f"{s['loss']:.2f} pt" if top1 else f"{s['loss']:.3g}"),
            "in plan": "kept" if s.get("in_plan") else "",
        }
        for s in record["scores"][:25]
    ]
    parts.append(
        "<h3>Ranking (layer-wise error of the all-low-precision graph; '=' marks a tie)</h3>" + _records_html(ranking)
    )
    cands = [
        {
            "candidate": c["label"],
            "nodes kept": len(c["kept_nodes"]),
            "accuracy": accuracy(c),
            "latency p50": _ms(c.get("latency_ms")),
            "meets budget": "yes" if c["meets"] else "no",
            **(
                {
                    "TensorRT-RTX engine layers": "" if c.get("engine_layers") is None else str(c["engine_layers"]),
                    "engine activations / weights": " / ".join(
                        "?" if c.get(k) is None else human_bytes(c[k])
                        for k in ("engine_activation_bytes", "engine_weights_bytes")
                    ),
                    "target": str(c.get("engine_target") or ""),
                }
                if any("engine_layers" in x for x in record["candidates"])
                else {}
            ),
        }
        for c in record["candidates"]
    ]
    parts.append("<h3>Plans measured</h3>" + _records_html(cands))
    return "".join(parts)


def _ms(value) -> str:
    return "" if value is None else f"{value:.4g} ms"


#: Clicking a point of the layer-wise error chart shows its node's figures below the chart (customdata = node,
#: tensor; hovertext holds the figures, already escaped by the chart).
_NODE_CLICK = (
    "var p=document.getElementById('{plot_id}');p.on('plotly_click',function(e){var t=e.points[0];"
    "if(!t.customdata)return;var d=document.getElementById('wb-node');d.innerHTML=t.hovertext||'';"
    "d.style.display='block';});"
)


def layer_error_html(record: dict, with_plotlyjs: bool) -> str:
    """The layer-wise error chart of a sensitivity record, clickable to the node (figures shown beneath)."""
    fig = charts.layer_error(list(record["layer_error"]), title=f"Layer-wise error of all-{record.get('precision')}")
    return (
        fig.to_html(
            full_html=False, include_plotlyjs=with_plotlyjs, config={"displaylogo": False}, post_script=_NODE_CLICK
        )
        + "<div id='wb-node' style='display:none;border-left:4px solid #4a78c2;padding:.4em .9em'></div>"
        "<p><i>Click a point to see its node.</i></p>"
    )


def roofline_html(run, device=None, roof=None, include_plotlyjs: bool = False) -> str:
    """The "hardware limit" section: each layer's share of the roofline, the model's lower bound beside the measured
    latency, the roofline chart and the time-above-the-limit table (plotly.js embedded only when asked: a report
    has it already)."""
    from ..analysis.roofline import TABLE_COLUMNS, roofline

    if not len(run.layers) or run.layers["time_ms"].isna().all():
        return "<p>This run has no per-layer times to hold against the hardware limit.</p>"
    try:
        roof = roof or roofline(run, device)
    except WorkbenchError as e:
        return note_html(str(e))
    notes = "".join(note_html(n) for n in roof.notes)
    figures = figures_html((charts.roofline(roof), charts.time_above_limit(roof)), include_plotlyjs)
    cols = list(TABLE_COLUMNS)
    ordered = roof.layers.sort_values("above_limit_ms", ascending=False, na_position="last")
    table = ordered[cols].to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    return (
        f"{notes}{table_html(roof.summary_rows())}{figures}<h3>Time above the limit, per layer</h3>"
        f'<div class="wide">{table}</div>'
    )


def write_roofline(run, path, device=None, model=None, roof=None) -> Path:
    """Write the roofline of ``run`` (``roof`` when already computed) to ``path``: a self-contained HTML page, or the
    per-layer table as CSV."""
    from ..analysis.roofline import roofline

    roof = roof or roofline(run, device, model=model)
    if str(path).lower().endswith(".csv"):
        return atomic_write(path, roof.layers.to_csv(index=False))
    body = [f"<h1>Roofline: {html.escape(run.name)}</h1>", roofline_html(run, roof=roof, include_plotlyjs=True)]
    return atomic_write(path, page_html(f"Roofline: {run.name}", body))


def report_html(run, *, in_run_folder: bool = False) -> str:
    """A self-contained HTML report of one run; its self-checks (the roofline's included) head it. ``in_run_folder``:
    the page is saved in the run's folder, so its trtexec command names the run's files by their names there."""
    roof = roofline_of(run)
    run = checked(run, roof)
    figures = list(charts.run_figures(run).values())
    sensitivity = []
    if run.sensitivity:
        sensitivity = ["<h2>Which layers lose accuracy (sensitivity)</h2>", sensitivity_html(run.sensitivity)]
        shown = charts.sensitivity_figures(run.sensitivity)
        shown.pop("Layer-wise error", None)
        sensitivity.append(figures_html(shown.values()))
        if run.sensitivity.get("layer_error"):
            sensitivity.append(layer_error_html(run.sensitivity, with_plotlyjs=False))
    body = [
        f"<h1>{html.escape(run.name)}</h1>",
        _run_sections(run, in_run_folder),
        *sensitivity,
        "<h2>Charts</h2>",
        figures_html(figures, include_plotlyjs=not sensitivity),
        "<h2>Hardware limit (roofline)</h2>",
        roofline_html(run, roof=roof),
        "<h2>Layers</h2>",
        _layer_table_html(run),
    ]
    return page_html(run.name, body)


def page_html(title: str, body: list[str]) -> str:
    """A whole HTML page: ``body`` parts under ``title``, with the report style."""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def write_report(run, path) -> Path:
    """Write :func:`report_html` to ``path`` atomically."""
    folder = run.directory is not None and Path(path).resolve().parent == Path(run.directory).resolve()
    return atomic_write(path, report_html(run, in_run_folder=folder))


def comparison_html(comparison) -> str:
    """A self-contained HTML page (plotly embedded once) with the legend, metrics, charts and layer diff."""
    return page_html(
        "Comparison",
        [
            f"<h1>Comparison of {len(comparison.runs)} runs</h1>",
            table_html(comparison.legend()),
            "".join(note_html(w) for w in comparison.warnings()),
            "<h2>Key metrics</h2><p>Best of the runs in <b>bold</b>.</p>",
            metrics_table_html(comparison.metrics),
            "<h2>Charts</h2>",
            figures_html(charts.comparison_figures(comparison).values()),
            "<h2>Per-layer diff</h2>",
            f'<div class="wide">{layer_diff_html(comparison.layers)}</div>',
        ],
    )


def metrics_table_html(metrics) -> str:
    """:func:`~workbench.analysis.compare.compare_metrics` as an HTML table, the best run of each row in bold."""
    shown, best = format_metrics(metrics), best_runs(metrics)
    head = "".join(f"<th>{html.escape(str(tag))}</th>" for tag in shown.columns)
    rows = []
    for row, values in shown.iterrows():
        cells = "".join(
            f"<td>{'<b>' if tag in best.get(row, ()) else ''}{html.escape(str(v))}"
            f"{'</b>' if tag in best.get(row, ()) else ''}</td>"
            for tag, v in values.items()
        )
        rows.append(f"<tr><th>{html.escape(str(row))}</th>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def write_comparison(comparison, path) -> Path:
    """Write :func:`comparison_html` to ``path`` atomically."""
    return atomic_write(path, comparison_html(comparison))
