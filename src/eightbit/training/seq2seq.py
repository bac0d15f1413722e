"""Train a Marian translation model on the shipped corpus, on CPU or GPU, resumably.

Token-budget batches of length-bucketed pairs, AdamW with inverse-square-root warm-up, label
smoothing, gradient clipping, periodic atomic checkpoints (``--resume`` continues exactly where
the last one stopped), greedy dev BLEU, and the best model exported in Hugging Face format::

    python -m eightbit.training.seq2seq --run-dir runs/marian-en-es --export models/marian-en-es
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from eightbit.data.batching import pack_by_tokens
from eightbit.errors import EightbitError
from eightbit.progress import progress as progress_bar
from eightbit.training.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json`` in the run directory).

    ``batch_tokens`` is a padded-token budget per batch (``sentences x longest``, source or
    target); ``warmup_steps`` the linear warm-up before the inverse-square-root decay;
    ``checkpoint_minutes`` the longest stretch of work an interruption can lose.
    """

    run_dir: Path
    export_dir: Path | None = None
    vocab_size: int = 8000
    batch_tokens: int = 6000
    max_length: int = 128
    learning_rate: float = 1e-3
    warmup_steps: int = 800
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    weight_decay: float = 0.0
    max_epochs: int = 12
    max_steps: int | None = None
    eval_every: int = 1000
    log_every: int = 50
    checkpoint_minutes: float = 8.0
    dev_size: int = 500
    seed: int = 1
    threads: int = 2
    progress: bool = True


def _pairs_tensors(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int):
    src = tokenizer([s for s, _ in pairs], truncation=True, max_length=max_length)["input_ids"]
    tgt = tokenizer(text_target=[t for _, t in pairs], truncation=True, max_length=max_length)[
        "input_ids"
    ]
    return src, tgt


def epoch_batches(
    src: list[list[int]], tgt: list[list[int]], batch_tokens: int, epoch: int, seed: int
) -> list[list[int]]:
    """Length-bucketed token-budget batches in a seeded order that depends only on the epoch."""
    lengths = [max(len(s), len(t)) for s, t in zip(src, tgt, strict=True)]
    batches = pack_by_tokens(lengths, batch_tokens)
    random.Random(seed * 1000 + epoch).shuffle(batches)
    return batches


def collate(
    indices: list[int], src: list[list[int]], tgt: list[list[int]], pad: int, start: int
) -> dict[str, torch.Tensor]:
    def padded(rows: list[list[int]]) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [pad] * (width - len(r)) for r in rows])

    input_ids = padded([src[i] for i in indices])
    labels = padded([tgt[i] for i in indices])
    decoder_input_ids = torch.cat([torch.full((len(indices), 1), start), labels[:, :-1]], dim=1)
    labels = labels.masked_fill(labels == pad, -100)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != pad).long(),
        "decoder_input_ids": decoder_input_ids,
        "labels": labels,
    }


def inverse_sqrt(step: int, warmup: int) -> float:
    step = max(step, 1)
    return min(step / warmup, math.sqrt(warmup / step))


def _loss(model: Any, batch: dict[str, torch.Tensor], smoothing: float) -> tuple[torch.Tensor, int]:
    labels = batch["labels"]
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=batch["decoder_input_ids"],
    ).logits
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=-100,
        label_smoothing=smoothing,
    )
    return loss, int((labels != -100).sum())


def dev_bleu(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> float:
    from eightbit.evaluate.metrics import translation_scores
    from eightbit.models.marian import translate

    was_training = model.training
    model.eval()
    outputs = translate(model, tokenizer, [s for s, _ in pairs], progress=False)
    model.train(was_training)
    scores = translation_scores(
        [o.text for o in outputs], [t for _, t in pairs], [o.hit_length_limit for o in outputs]
    )
    return scores.bleu


def prepare_run(config: TrainConfig, train_pairs: Sequence[tuple[str, str]]) -> tuple[Any, Any]:
    """Tokenizer (trained once, kept in the run directory) and a fresh model."""
    from transformers import MarianTokenizer

    from eightbit.models.marian_build import build_model, train_sentencepiece, write_tokenizer_files

    tok_dir = config.run_dir / "tokenizer"
    if (tok_dir / "vocab.json").is_file():
        tokenizer = MarianTokenizer.from_pretrained(str(tok_dir))
    else:
        sentences = [s for pair in train_pairs for s in pair]
        spm = train_sentencepiece(sentences, config.run_dir / "spm", config.vocab_size)
        tokenizer = write_tokenizer_files(spm, tok_dir)
    torch.manual_seed(config.seed)
    model = build_model(len(tokenizer))
    model.generation_config.bad_words_ids = [[model.config.pad_token_id]]
    return tokenizer, model


def train(
    config: TrainConfig,
    train_pairs: Sequence[tuple[str, str]],
    dev_pairs: Sequence[tuple[str, str]],
    resume: bool = False,
) -> dict[str, Any]:
    """Train (or resume) and return the final progress record."""
    torch.set_num_threads(config.threads)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, model = prepare_run(config, train_pairs)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(0.9, 0.98),
        eps=1e-9,
        weight_decay=config.weight_decay,
    )
    state = {"step": 0, "epoch": 0, "batch": 0, "best_bleu": -1.0, "tokens": 0}
    ckpt = config.run_dir / "checkpoint"
    if resume and (ckpt / "state.json").is_file():
        state = load_checkpoint(ckpt, model, optimizer)
        log.info(
            "resumed at step %d (epoch %d, batch %d)", state["step"], state["epoch"], state["batch"]
        )
    src, tgt = _pairs_tensors(tokenizer, train_pairs, config.max_length)
    dev = list(dev_pairs[: config.dev_size])
    pad, start = model.config.pad_token_id, model.config.decoder_start_token_id
    log_file = config.run_dir / "train_log.jsonl"
    last_save = time.monotonic()
    model.train()
    while state["epoch"] < config.max_epochs:
        batches = epoch_batches(src, tgt, config.batch_tokens, state["epoch"], config.seed)
        started = time.monotonic()
        tokens_since = 0
        for b in progress_bar(
            range(state["batch"], len(batches)),
            f"epoch {state['epoch']}",
            "batch",
            config.progress,
            total=len(batches) - state["batch"],
        ):
            batch = {k: v.to(device) for k, v in collate(batches[b], src, tgt, pad, start).items()}
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate * inverse_sqrt(
                    state["step"] + 1, config.warmup_steps
                )
            loss, ntok = _loss(model, batch, config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            state["step"] += 1
            state["batch"] = b + 1
            state["tokens"] += ntok
            tokens_since += ntok
            if state["step"] % config.log_every == 0:
                rate = tokens_since / max(time.monotonic() - started, 1e-6)
                _append(
                    log_file,
                    {
                        "step": state["step"],
                        "epoch": state["epoch"],
                        "loss": round(loss.item(), 4),
                        "tgt_tokens_per_s": round(rate, 1),
                        "lr": optimizer.param_groups[0]["lr"],
                    },
                )
            if state["step"] % config.eval_every == 0:
                _evaluate(config, model, tokenizer, dev, state, log_file)
            if time.monotonic() - last_save > 60 * config.checkpoint_minutes:
                save_checkpoint(ckpt, model, optimizer, state)
                last_save = time.monotonic()
            if config.max_steps and state["step"] >= config.max_steps:
                save_checkpoint(ckpt, model, optimizer, state)
                return state
        state["epoch"] += 1
        state["batch"] = 0
        _evaluate(config, model, tokenizer, dev, state, log_file)
        save_checkpoint(ckpt, model, optimizer, state)
        last_save = time.monotonic()
    return state


def _evaluate(
    config: TrainConfig, model: Any, tokenizer: Any, dev: list, state: dict, log_file: Path
) -> None:
    if not dev:
        return
    bleu = dev_bleu(model, tokenizer, dev)
    improved = bleu > state["best_bleu"]
    _append(
        log_file,
        {"step": state["step"], "epoch": state["epoch"], "dev_bleu": bleu, "best": improved},
    )
    log.info("step %d: dev BLEU %.2f%s", state["step"], bleu, " (best)" if improved else "")
    if improved:
        state["best_bleu"] = bleu
        if config.export_dir is not None:
            export(model, tokenizer, config.export_dir)


def export(model: Any, tokenizer: Any, directory: Path) -> None:
    """Hugging Face checkpoint (safetensors + config + tokenizer), written atomically."""
    import shutil
    import tempfile

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    # mkdtemp (and safetensors) create private files; an exported model is meant to be shared
    staging.chmod(0o755)
    for path in staging.iterdir():
        path.chmod(0o644)
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    staging.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"time": round(time.time(), 1), **record}) + "\n")


# Settings that shape the optimization trajectory: a resumed run must keep them, or the saved data
# position (epoch, batch) and learning-rate schedule would no longer mean the same thing.
TRAJECTORY_FIELDS = frozenset(
    {
        "vocab_size",
        "batch_tokens",
        "max_length",
        "learning_rate",
        "warmup_steps",
        "label_smoothing",
        "clip_norm",
        "weight_decay",
        "seed",
    }
)
_CLI_FIELDS = tuple(f for f in fields(TrainConfig) if f.name not in ("run_dir", "export_dir"))
CONFIG_FILE = "config.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eightbit.training.seq2seq",
        description="Train the Marian EN->ES model on the shipped corpus (resumable).",
    )
    parser.add_argument("--run-dir", type=Path, required=True, help="checkpoints and logs")
    parser.add_argument(
        "--export",
        dest="export_dir",
        type=Path,
        help="where the best model (by dev BLEU) goes, in Hugging Face format "
        "(default: RUN_DIR/export)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from RUN_DIR/checkpoint with the run's saved settings",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for field in _CLI_FIELDS:
        if field.name == "progress":
            continue
        kind = int if field.default is None else type(field.default)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"default: {field.default}",
        )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: defaults, then (with ``--resume``) the saved ones, then the CLI.

    A resumed run refuses a changed :data:`TRAJECTORY_FIELDS` setting instead of silently
    continuing with a different schedule or batching.
    """
    values: dict[str, Any] = {f.name: f.default for f in _CLI_FIELDS}
    values["export_dir"] = None
    saved_path = args.run_dir / CONFIG_FILE
    saved = json.loads(saved_path.read_text()) if args.resume and saved_path.is_file() else None
    if saved:  # a step limit is for one invocation (a test, a time slot), not for the run
        values.update({k: v for k, v in saved.items() if k in values and k != "max_steps"})
    for name in values:
        given = getattr(args, name, None)
        if given is None:
            continue
        if saved and name in TRAJECTORY_FIELDS and given != values[name]:
            raise EightbitError(
                f"--{name.replace('_', '-')} {given}: the run in {args.run_dir} was started with "
                f"{values[name]}; a resumed run keeps its settings (start a new run instead)"
            )
        values[name] = given
    values["progress"] = not args.quiet
    values["export_dir"] = Path(values["export_dir"] or args.run_dir / "export")
    return TrainConfig(run_dir=args.run_dir, **values)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m eightbit.training.seq2seq --run-dir DIR [...]``."""
    from eightbit.data.corpus import load_parallel_corpus

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except EightbitError as err:
        parser.error(str(err))
    config.run_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handlers: list[logging.Handler] = [
        logging.StreamHandler(),
        logging.FileHandler(config.run_dir / "train.log", encoding="utf-8"),
    ]
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    staged = config.run_dir / f".{CONFIG_FILE}.tmp"
    staged.write_text(json.dumps(asdict(config), default=str, indent=1))
    os.replace(staged, config.run_dir / CONFIG_FILE)
    log.info("settings: %s", json.dumps(asdict(config), default=str))
    train(config, load_parallel_corpus("train"), load_parallel_corpus("dev"), resume=args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
