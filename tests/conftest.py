"""Test-wide settings: offline, deterministic, two threads like the target machine."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(2)
settings.register_profile("eightbit", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("eightbit")


@contextmanager
def threads(count: int) -> Iterator[None]:
    """torch runs ``count`` intra-op threads within the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matrices: on a busy machine a second thread only adds contention (3x slower)."""
    with threads(1):
        yield


@pytest.fixture(scope="session")
def fine_tuned_classifier(tmp_path_factory):
    """A tiny BERT classifier fine-tuned on 40 synthetic texts (labels negative, positive)."""
    from tests.tiny_classifier import write_fine_tuned_tiny_bert

    with threads(1):
        return write_fine_tuned_tiny_bert(tmp_path_factory.mktemp("cls") / "fine-tuned")
