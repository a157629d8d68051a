"""Archive-scale background modelling: the headless workflow over many observations on Dask.

Each observation of an observation list goes through the same engine functions as the CLI
and the widgets (:func:`~nuskybgd_engine.observation.prepare_observation` → regions →
:func:`~nuskybgd_engine.groups.group_from_events` →
:meth:`~nuskybgd_engine.analysis.BackgroundAnalysis.fit` → exports) in
:func:`~.observation.process_observation`, a pure function of its inputs that writes its products
under ``workdir/<obsid>/products``. :func:`~.runner.run_batch` runs one task per observation,
in-process or as tasks of ``dask.distributed`` (an existing scheduler or a ``LocalCluster``);
nothing here schedules work itself.

Resumability
    ``workdir/<obsid>/manifest.json`` (written atomically) records the inputs (path, size,
    mtime, sha256), options, status (``pending``/``running``/``done``/``failed``), the
    one-line error, outputs, timings and the attempt count. A re-run skips observations whose
    manifest says ``done`` with unchanged inputs and options, and retries everything else.
Isolation
    Any error of one observation (corrupt file, no usable region, fit not converging) is
    caught in its task and recorded; it never stops the others. A worker that dies is replaced
    by Dask and its task re-run (products are staged and moved into place, so a re-run never
    sees half-written files and the summary holds each observation once).
Summary
    ``workdir/summary.csv`` and ``summary.parquet`` (pyarrow): one row per observation, module
    and region (``kind`` = ``background`` for the fitted regions, ``source`` for source
    regions, ``detector`` for each whole detector) with fitted norms, statistic, and the
    model or predicted background in the band; ``workdir/status.csv`` lists every
    observation's status and error.
Joint fits (optional)
    :func:`~.joint.read_joint_config` / :func:`~.joint.joint_fit`: several observations' spectra in
    one :class:`~nuskybgd_engine.analysis.BackgroundAnalysis`, sharing the named background sources.

Modules: :mod:`.inputs` (observation list, inputs, manifests) · :mod:`.observation` (one observation)
· :mod:`.summary` (rows and tables) · :mod:`.joint` · :mod:`.runner` (the batch, serial or on Dask).
"""

from .inputs import BatchEntry, observation_inputs, read_manifest, read_obslist
from .joint import JOINT_SHARES, joint_fit, read_joint_config
from .observation import KILL_HOOK_ENV, process_observation
from .runner import BatchReport, run_batch
from .summary import SUMMARY_COLUMNS, write_summary

__all__ = [
    "JOINT_SHARES",
    "KILL_HOOK_ENV",
    "SUMMARY_COLUMNS",
    "BatchEntry",
    "BatchReport",
    "joint_fit",
    "observation_inputs",
    "process_observation",
    "read_joint_config",
    "read_manifest",
    "read_obslist",
    "run_batch",
    "write_summary",
]
