"""Decoding throughput (generated target tokens per second): HF generate vs the eightbit engine.

Usage (from the repository root; ~5 minutes on a quiet 2-core machine with the defaults):

    PYTHONPATH=src python bench/engine_throughput.py --int8 DIR --json out.json --markdown out.md

``DIR`` is an INT8 model from ``eightbit quantize models/marian-en-es DIR``. Every run decodes the
same length-sorted, token-packed batches of the test set with 2 intra-op threads in total.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from eightbit.atomic import write_text_atomic
from eightbit.data.batching import pack_by_tokens
from eightbit.data.corpus import load_parallel_corpus
from eightbit.data.parallel import map_in_workers
from eightbit.evaluate.report import markdown_table, write_json
from eightbit.models.common import encode_batch
from eightbit.models.marian import batch_generator, load_translation_model, max_new_tokens_for


def generated_tokens(ids: torch.Tensor, eos: int, pad: int) -> int:
    """Target tokens produced (up to and including EOS), the decoder start token excluded."""
    body = ids[:, 1:]
    after_eos = (torch.cumsum((body == eos).int(), 1) - (body == eos).int()) > 0
    return int(((body != pad) & ~after_eos).sum())


def measure(path: Path, engine: str, sources: list[str], beam: int, workers: int) -> dict:
    model, tokenizer = load_translation_model(path)
    lengths = [len(ids) for ids in tokenizer(sources)["input_ids"]]
    batches = [
        encode_batch(tokenizer, [sources[i] for i in b], 256)
        for b in pack_by_tokens(lengths, 4096, 64)
    ]
    generate = batch_generator(model, engine)
    positions = model.config.max_position_embeddings

    def decode(batch: dict) -> torch.Tensor:
        return generate(batch, beam, max_new_tokens_for(batch["input_ids"].shape[1], positions))

    decode(batches[-1])  # warm up (kernel packing, allocator)
    start = time.perf_counter()
    outputs = list(map_in_workers(decode, batches, workers, total_threads=2))
    seconds = time.perf_counter() - start
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    tokens = sum(generated_tokens(ids, eos, pad) for ids in outputs)
    return {
        "model": str(path),
        "engine": engine,
        "beam": beam,
        "workers": workers,
        "sentences": len(sources),
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, default=Path("models/marian-en-es"))
    parser.add_argument("--int8", type=Path, required=True, help="INT8 model directory")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    sources = [s for s, _ in load_parallel_corpus("test")[: args.sentences]]
    runs = [
        (args.fp32, "hf", 1),
        *((p, "eightbit", w) for p in (args.fp32, args.int8) for w in args.workers),
    ]
    results = [measure(path, engine, sources, args.beam, w) for path, engine, w in runs]
    headers = ["model", "engine", "beam", "workers", "tokens/s", "x HF FP32"]
    base = results[0]["tokens_per_s"]
    rows = [
        [
            r["model"],
            r["engine"],
            r["beam"],
            r["workers"],
            r["tokens_per_s"],
            f"{r['tokens_per_s'] / base:.2f}",
        ]
        for r in results
    ]
    table = markdown_table(headers, rows)
    print(table, end="")
    if args.json:
        write_json(args.json, {"results": results})
    if args.markdown:
        write_text_atomic(args.markdown, table)


if __name__ == "__main__":
    main()
