"""The Ray executor: the study's tasks as Ray tasks on a local instance or an existing cluster.

``pip install robustlayers[ray]``. Without ``address`` a local Ray instance is started (or the
one this process already joined is used); ``address`` ("auto", "ray://host:10001", "host:6379")
joins a running cluster. Each task asks for the cores of one job slot and, where the cluster has
GPUs, one GPU. The workers write into the same study folder and runs index, so that folder must
be on a filesystem every node sees.
"""

from __future__ import annotations

import os
from pathlib import Path

from robustlayers.errors import ConfigError
from robustlayers.studies.tasks import Task
from robustlayers.studies.worker import run_task


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'robustlayers[ray]' "
                          "(or choose --executor local)") from None
    return ray


class RayBackend:
    def __init__(self, study_dir: Path, *, address: str | None, jobs: int):
        ray = self.ray = _ray()
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"num_cpus": os.cpu_count() or 1}
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        resources = ray.cluster_resources()
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        cpus = max(1, int(resources.get("CPU", 1)) // max(1, jobs))
        self.threads = cpus
        self.study_dir = Path(study_dir).resolve()
        self.remote = ray.remote(run_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)

    def submit(self, task: Task):
        return self.remote.remote(task.to_dict(), str(self.study_dir), self.threads)

    def wait(self, handles):
        ready, _ = self.ray.wait(handles, num_returns=1)
        return [(ref, self.ray.get(ref)) for ref in ready]

    def stop(self, handles):
        for ref in handles:  # a cancelled run stops as interrupted, keeping its checkpoint
            self.ray.cancel(ref)
