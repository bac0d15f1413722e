"""Build a Marian translation model and its SentencePiece tokenizer from scratch, locally.

The vocabulary is a shared English+Spanish SentencePiece model trained on the training split; the
files follow the OPUS-MT layout (``source.spm``, ``target.spm``, ``vocab.json``) so the result
loads with ``MarianTokenizer`` / ``MarianMTModel.from_pretrained`` like any OPUS-MT checkpoint.
Ids: ``</s>`` 0, ``<unk>`` 1, the SentencePiece pieces, then ``<pad>`` last (Marian convention;
``<pad>`` is also the decoder start token).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MarianArchitecture:
    """Shape of the model; defaults give the ~7.7M-parameter model shipped with eightbit."""

    d_model: int = 256
    encoder_layers: int = 3
    decoder_layers: int = 3
    attention_heads: int = 4
    ffn_dim: int = 1024
    max_positions: int = 256
    dropout: float = 0.1
    activation: str = "relu"


def train_sentencepiece(
    sentences: Sequence[str],
    out_dir: str | os.PathLike[str],
    vocab_size: int,
    seed_sentences: int | None = None,
    model_type: str = "unigram",
) -> Path:
    """Train a SentencePiece model (``unigram`` or ``bpe``) on ``sentences``; returns the
    ``.model`` path.

    ``vocab_size`` counts every id of the final model, ``<pad>`` included. A unigram vocabulary
    may come out smaller than asked on a small corpus; BPE reaches the exact size.
    """
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences[:seed_sentences] if seed_sentences else sentences),
        model_writer=model,
        vocab_size=vocab_size - 1,
        model_type=model_type,
        character_coverage=1.0,
        eos_id=0,
        unk_id=1,
        bos_id=-1,
        pad_id=-1,
        num_threads=2,
        minloglevel=2,
        shuffle_input_sentence=False,
        hard_vocab_limit=False,
    )
    path = out / "spm.model"
    path.write_bytes(model.getvalue())
    return path


def write_tokenizer_files(spm_model: Path, out_dir: str | os.PathLike[str]) -> Any:
    """OPUS-MT tokenizer files in ``out_dir``; returns the loaded ``MarianTokenizer``."""
    import sentencepiece as spm
    from transformers import MarianTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = spm.SentencePieceProcessor(model_file=str(spm_model))
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0))
    for name in ("source.spm", "target.spm"):
        shutil.copyfile(spm_model, out / name)
    tokenizer = MarianTokenizer(
        str(out / "source.spm"),
        str(out / "target.spm"),
        str(out / "vocab.json"),
        model_max_length=512,
    )
    tokenizer.save_pretrained(str(out))
    return tokenizer


def build_model(vocab_size: int, arch: MarianArchitecture = MarianArchitecture()) -> Any:
    """A randomly initialized ``MarianMTModel`` with shared, tied embeddings."""
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        d_model=arch.d_model,
        encoder_layers=arch.encoder_layers,
        decoder_layers=arch.decoder_layers,
        encoder_attention_heads=arch.attention_heads,
        decoder_attention_heads=arch.attention_heads,
        encoder_ffn_dim=arch.ffn_dim,
        decoder_ffn_dim=arch.ffn_dim,
        max_position_embeddings=arch.max_positions,
        dropout=arch.dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function=arch.activation,
        pad_token_id=vocab_size - 1,
        eos_token_id=0,
        decoder_start_token_id=vocab_size - 1,
        forced_eos_token_id=0,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        num_beams=1,
        max_length=arch.max_positions,
    )
    model = MarianMTModel(config)
    model.config.eightbit_architecture = asdict(arch)
    return model
