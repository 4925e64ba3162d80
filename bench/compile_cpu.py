"""PGD-20 on the small CNN on CPU: the default fast path, the plain path and the ascent step
compiled by ``torch.compile`` (inductor; ``PGD(..., compile=True)``), interleaved rounds in one
process, plus how far the compiled attack's images are from the plain attack's.

    PYTHONPATH=src .venv/bin/python bench/compile_cpu.py [--rounds 5] [--batch 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from robustlayers.attacks import PGD
from robustlayers.models import create_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = create_model("smallcnn", num_classes=10, in_channels=1, input_size=28, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    attacks = {"fast path (default)": PGD(eps=0.1, steps=20),
               "plain": PGD(eps=0.1, steps=20, fold_bn=False, channels_last=False),
               "compile=default": PGD(eps=0.1, steps=20, compile=True)}
    start = time.perf_counter()
    compiled = attacks["compile=default"](model, x, y)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
          f"{args.rounds} rounds; first compiled call (compilation included): "
          f"{time.perf_counter() - start:.1f} s")
    plain = attacks["plain"](model, x, y)
    with torch.no_grad():
        same = (model(plain).argmax(1) == model(compiled).argmax(1)).float().mean().item()
        losses = [F.cross_entropy(model(a), y).item() for a in (plain, compiled)]
    print(f"compiled vs plain: {(plain - compiled).abs().gt(1e-4).float().mean().item():.2%} of "
          f"pixels differ by > 1e-4 (sign of near-zero gradients), same prediction on "
          f"{same:.1%}, loss {losses[0]:.4f} vs {losses[1]:.4f}")
    times = {name: [] for name in attacks}
    for r in range(args.rounds):
        for name in (list(attacks) if r % 2 == 0 else list(attacks)[::-1]):
            start = time.perf_counter()
            attacks[name](model, x, y)
            times[name].append(time.perf_counter() - start)
    for name, seconds in times.items():
        ratios = [p / s for p, s in zip(times["plain"], seconds)]
        print(f"  {name:<20} median {statistics.median(seconds):.3f} s   plain / this "
              f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
