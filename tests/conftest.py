"""Shared test settings: small thread count so parallel suites do not oversubscribe 2 cores."""

import torch

torch.set_num_threads(1)
