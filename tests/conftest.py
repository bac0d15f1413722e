"""Test-wide settings: offline, deterministic, two threads like the target machine."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from hypothesis import settings

torch.set_num_threads(2)
settings.register_profile("eightbit", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("eightbit")
