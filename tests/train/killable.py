"""``python killable.py ARGS...``: ``robustlayers train ARGS`` in a process that SIGKILLs itself
at a chosen point, for the kill-and-resume tests (test-only; the library has no kill hook).

KILL_AT (environment):
- ``batch:E:B``  — during epoch E (1-based), right after batch B of it was drawn (mid-epoch);
- ``manifest:TAG`` — while checkpoint TAG is being written: model.safetensors and state.pt are
  on disk in the staging directory, the manifest is not (robustlayers.runs writes it last).
"""

import os
import signal
import sys

import torch

torch.set_num_threads(1)


def _die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _patch(kill_at: str) -> None:
    kind, _, where = kill_at.partition(":")
    if kind == "batch":
        import robustlayers.train.loop as loop

        epoch, batch = (int(v) for v in where.split(":"))
        original = loop.iter_batches

        def iter_batches(*args, **kwargs):
            for i, item in enumerate(original(*args, **kwargs), start=1):
                if kwargs.get("epoch") == epoch - 1 and i == batch:
                    _die()
                yield item

        loop.iter_batches = iter_batches
    elif kind == "manifest":
        import robustlayers.runs.checkpoint as ck

        original = ck.atomic_write_json

        def atomic_write_json(path, obj, **kwargs):
            if os.path.basename(str(path)) == ck.MANIFEST_FILE and obj.get("tag") == where:
                assert os.path.exists(os.path.join(os.path.dirname(str(path)), ck.WEIGHTS_FILE))
                _die()
            return original(path, obj, **kwargs)

        ck.atomic_write_json = atomic_write_json
    elif kind:
        raise SystemExit(f"unknown KILL_AT {kill_at!r}")


if __name__ == "__main__":
    _patch(os.environ.get("KILL_AT", ""))
    from robustlayers.cli.main import main

    sys.exit(main(sys.argv[1:]))
