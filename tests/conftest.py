"""Test-wide settings: offline, deterministic, two threads like the target machine."""

import os
from collections.abc import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from hypothesis import settings

from eightbit.data.parallel import intra_op_threads

torch.set_num_threads(2)
settings.register_profile("eightbit", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("eightbit")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matrices: on a busy machine a second thread only adds contention (3x slower)."""
    with intra_op_threads(1):
        yield


@pytest.fixture(scope="session")
def fine_tuned_classifier(tmp_path_factory):
    """A tiny BERT classifier fine-tuned on 40 synthetic texts (labels negative, positive)."""
    from tests.tiny_classifier import write_fine_tuned_tiny_bert

    with intra_op_threads(1):
        return write_fine_tuned_tiny_bert(tmp_path_factory.mktemp("cls") / "fine-tuned")
