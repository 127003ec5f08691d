"""trtexec interop: import its outputs as a Run, and render a BuildConfig as a trtexec command line.

Import (:func:`import_trtexec`) recognises each file by its content, whatever it is called:

============================  ====================================================================================
layer information             ``--exportLayerInfo`` JSON (8.x, 10.x, 11.x; see :mod:`workbench.results.layerinfo`)
per-layer profile             ``--exportProfile`` JSON: ``[{"count": N}, {"name", "timeMs", "averageMs", ...}]``
per-iteration times           ``--exportTimes`` JSON: ``[{"startEnqMs", ..., "latencyMs"}, ...]``
log                           trtexec's console output: options, device, ``=== Performance summary ===``,
                              the ``=== Profile (N iterations ) ===`` table of ``--dumpProfile``
TREx metadata                 ``*.metadata.json`` (device attributes), ``*.build.metadata.json`` (model/build
                              options), ``*.profile.metadata.json`` (performance summary, inference options, device)
============================  ====================================================================================

Units: the layer table's ``time_ms`` is the mean time per inference (a layer's total time over the profiled
iterations divided by their count), as everywhere in the workbench.

Modules: :mod:`.files` reads each kind of file on its own, :mod:`.importer` joins one engine's files into a Run,
:mod:`.commandline` writes the trtexec command for a BuildConfig or a Run. Import the names from this package.
"""

from .commandline import COMMAND_VERSIONS, REMOVED_IN_11, command, command_for_run, onnx_for_run, trtexec_command
from .files import (
    FILE_KINDS,
    LayerProfile,
    Times,
    TrtexecLog,
    log_from_metadata,
    parse_log,
    parse_profile_json,
    parse_profile_table,
    parse_times,
    recognize,
)
from .importer import import_trtexec, join_profile

__all__ = [
    "COMMAND_VERSIONS",
    "FILE_KINDS",
    "REMOVED_IN_11",
    "LayerProfile",
    "Times",
    "TrtexecLog",
    "command",
    "command_for_run",
    "import_trtexec",
    "join_profile",
    "log_from_metadata",
    "onnx_for_run",
    "parse_log",
    "parse_profile_json",
    "parse_profile_table",
    "parse_times",
    "recognize",
    "trtexec_command",
]
