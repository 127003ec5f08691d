"""Precision recipes: which nodes a low-precision variant keeps in higher precision, saved as a small JSON file.

A recipe is what ``workbench sensitivity`` chooses and what ``profile(..., recipe=)``, ``workbench profile
--recipe FILE``, the panel and sweeps accept. Applying it adds its nodes to ``exclude_nodes`` (int8/fp8: left
unquantized) or ``keep_fp32_nodes`` (fp16/bf16) as exact-name patterns, so the variant is cached like any other (the
cache key holds the options, hence the nodes). Format (version 1)::

    {"recipe": 1, "model": {"name", "sha256"}, "precision": "int8", "keep_nodes": [node names],
     "options": {graph options the plan was made with, e.g. high_precision_dtype}, "budget": {kind, value} | null,
     "measured": {metric, label_accuracy, cosine, latency_ms} | null, "made_by": "workbench sensitivity"}

A recipe made for another model (sha256) is refused, with both names. A recipe file is read as a file from the
user (:func:`workbench.paths.read_user_json`: a regular file of at most :data:`MAX_RECIPE_BYTES`) and every field is
checked before use: a bad one is one line naming the file and the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..config import PRECISIONS
from ..errors import WorkbenchError, excerpt
from ..paths import atomic_write, read_user_json

RECIPE_VERSION = 1
#: The largest recipe file read (one made for a 100,000-node model is a few MB).
MAX_RECIPE_BYTES = 32 << 20
#: The longest node name a recipe may hold (ONNX exporters write names of a few hundred characters at most).
MAX_NODE_NAME = 4096
#: The variant options a recipe carries (graph settings; never data paths or run settings) and what each must be:
#: (test, what it needs, for the error line).
_OPTION_TYPES = {
    "calibration_method": (lambda v: isinstance(v, str), "text ('entropy' or 'max')"),
    "calibration_batch": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a whole number > 0"),
    "high_precision_dtype": (lambda v: isinstance(v, str), "text ('fp16', 'bf16' or 'fp32')"),
    "exclude_op_types": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of op types"),
    "keep_fp32_op_types": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of op types"),
    "data_max": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a positive number"),
    "init_max": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a positive number"),
    "keep_io_types": (lambda v: isinstance(v, bool), "true or false"),
}
_CARRIED = tuple(_OPTION_TYPES)


def node_option(precision: str) -> str:
    """The variant option that keeps nodes in higher precision at ``precision``."""
    return "keep_fp32_nodes" if precision in ("fp16", "bf16") else "exclude_nodes"


def exact(names) -> list[str]:
    """Exact-name patterns (variant options match node names with re.match from the start)."""
    return [f"{re.escape(n)}$" for n in names]


def exclusion_options(precision: str, keep_nodes, options: dict | None = None) -> dict:
    """``{exclude_nodes | keep_fp32_nodes: given patterns + the nodes}`` for ``make_variant``."""
    key = node_option(precision)
    given = (options or {}).get(key) or []
    given = [given] if isinstance(given, str) else list(given)
    return {key: given + [p for p in exact(keep_nodes) if p not in given]}


def make_recipe(
    model,
    precision: str,
    keep_nodes,
    options: dict | None = None,
    *,
    budget: dict | None = None,
    measured: dict | None = None,
) -> dict:
    carried = {k: v for k, v in (options or {}).items() if k in _CARRIED and v is not None}
    return {
        "recipe": RECIPE_VERSION,
        "model": {"name": model.name, "sha256": model.sha256},
        "precision": precision,
        "keep_nodes": list(keep_nodes),
        "options": carried,
        "budget": budget,
        "measured": measured,
        "made_by": "workbench sensitivity",
    }


def save_recipe(recipe: dict, path) -> Path:
    path = Path(path)
    atomic_write(path, json.dumps(load_recipe(recipe), indent=1))
    return path


def load_recipe(source) -> dict:
    """A recipe dict, or a path to a recipe JSON file; validated (one line naming the file and the field)."""
    fix = "give the recipe.json that 'workbench sensitivity' wrote"
    if isinstance(source, dict):
        recipe, where = source, "The recipe"
    else:
        recipe = read_user_json(source, "recipe", limit=MAX_RECIPE_BYTES, fix=fix)
        where = f"The recipe {excerpt(str(source))}"
    if not isinstance(recipe, dict) or "recipe" not in recipe:
        raise WorkbenchError(f"{where} is not a precision recipe (no 'recipe' key): {fix}.")

    def bad(field: str, need: str):
        raise WorkbenchError(f"{where} has a bad '{field}' ({excerpt(recipe.get(field), 60)}): {need}; {fix}.")

    if recipe["recipe"] != RECIPE_VERSION:
        raise WorkbenchError(
            f"{where} has version {excerpt(recipe['recipe'], 40)}; this workbench reads {RECIPE_VERSION}: "
            "make it again with 'workbench sensitivity'."
        )
    if recipe.get("precision") not in PRECISIONS:
        bad("precision", f"one of {', '.join(PRECISIONS)}")
    model = recipe.get("model")
    if model is not None and (
        not isinstance(model, dict) or not all(isinstance(model.get(k, ""), str) for k in ("name", "sha256"))
    ):
        bad("model", "an object with the model's name and sha256 as text")
    nodes = recipe.get("keep_nodes")
    if not isinstance(nodes, list) or not all(isinstance(n, str) and 0 < len(n) <= MAX_NODE_NAME for n in nodes):
        bad("keep_nodes", f"a list of node names (each 1 to {MAX_NODE_NAME:,} characters)")
    options = recipe.get("options", {})
    if not isinstance(options, dict) or set(options) - set(_CARRIED):
        bad("options", f"an object with only {', '.join(_CARRIED)}")
    for key, value in options.items():
        kind, need = _OPTION_TYPES[key]
        if not kind(value):
            raise WorkbenchError(
                f"{where} has a bad option '{key}' ({type(value).__name__} {excerpt(value, 60)}): {need}; {fix}."
            )
    for field in ("budget", "measured"):
        if not isinstance(recipe.get(field), (dict, type(None))):
            bad(field, "an object or null")
    return recipe


def apply_recipe(recipe, model, precision: str | None, options: dict) -> tuple[str, dict]:
    """(precision, variant options) for ``model`` with ``recipe`` applied on top of ``options``."""
    recipe = load_recipe(recipe)
    wanted = recipe.get("precision")
    if precision not in (None, wanted) and precision != "fp32":
        raise WorkbenchError(f"The recipe is for {wanted} but precision {precision} was asked: drop one of them.")
    expected = (recipe.get("model") or {}).get("sha256")
    if expected and expected != model.sha256:
        raise WorkbenchError(
            f"The recipe was made for model {excerpt(recipe['model'].get('name'))} (sha256 "
            f"{expected[:12]}) but '{model.name}' is {model.sha256[:12]}: make a recipe for this model."
        )
    merged = {**recipe.get("options", {}), **{k: v for k, v in options.items() if v is not None}}
    merged.update(exclusion_options(wanted, recipe["keep_nodes"], merged))
    return wanted, merged
