"""The run store: run directories (config, metrics, checkpoints, result), crash-safe writes,
the SQLite run index, and rebuilding a trained model from a run.

Checkpoints save weights as safetensors and everything else with ``torch.save`` in a form that
loads with ``torch.load(weights_only=True)``; record RNG states with :func:`capture_rng_state`.
"""

from robustlayers.runs.atomic import (
    atomic_safetensors_save,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from robustlayers.runs.checkpoint import CheckpointCorrupt, epoch_tag, tag_epoch
from robustlayers.runs.index import RunIndex, compare_rows, summarize_run
from robustlayers.runs.load import load_run_model
from robustlayers.runs.paths import check_output_path
from robustlayers.runs.rng import capture_rng_state, restore_rng_state
from robustlayers.runs.rundir import CheckpointWarning, RunDir, RunStoreWarning, iter_run_dirs

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "atomic_safetensors_save",
    "RunDir",
    "CheckpointCorrupt",
    "CheckpointWarning",
    "RunStoreWarning",
    "epoch_tag",
    "tag_epoch",
    "iter_run_dirs",
    "RunIndex",
    "summarize_run",
    "compare_rows",
    "load_run_model",
    "check_output_path",
    "capture_rng_state",
    "restore_rng_state",
]
