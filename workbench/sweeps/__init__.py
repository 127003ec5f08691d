"""Sweeps: many build settings of one model, run on many GPUs or machines, kept as Runs, read as one Pareto front.

::

    import workbench as wb
    s = wb.sweep("model.onnx", precisions="fp32,fp16,int8", batches="1,8,32", workspaces="1G,4G",
                 opt_levels="3,5", calibration="calib.npz", executor="ray")   # or executor="local"
    s.table(); s.best(); s.write_report()
    wb.sweep(resume=s.id)           # after a kill: runs only what is not done

Modules: :mod:`.plan` (the points as frozen BuildConfigs, with stable keys), :mod:`.record` (the sweep's record in
the workspace: done / failed with the reason / pending, written atomically), :mod:`.point` (running one point,
moving run directories as bytes), :mod:`.executors` (local worker processes, Ray tasks), :mod:`.runner`
(:func:`sweep`, :class:`Sweep`). Ray is optional and imported only when a Ray sweep starts.
"""

from .plan import SweepPoint, plan_points
from .record import SweepRecord, list_sweeps
from .runner import Sweep, load_sweep, sweep

__all__ = ["Sweep", "SweepPoint", "SweepRecord", "list_sweeps", "load_sweep", "plan_points", "sweep"]
