#!/usr/bin/env python3
"""Build the English-Spanish parallel corpus shipped with eightbit (deterministic).

Sources (public domain, Debian packages ``sword-text-web`` and ``sword-text-sparv``, read with
``diatheke``): World English Bible (engWEB2015eb) and Reina-Valera 1909 (spaRV1909eb). Verses are
aligned by reference (both modules use the KJV versification) and cleaned:

* markup removed (Strong's ``<w savlm=...>`` tags, poetry ``<l>``/``<lg>``, ``<transChange>``),
  with a space where two tagged words were glued together (``God</w><w ...>created``);
* footnotes (``<note>``) dropped with their content;
* psalm headings: the WEB module repeats the last ``<title>`` in front of every later verse
  (even in Revelation); a heading is kept only on verse 1 of a psalm, where RV1909 has it too;
* whitespace normalized; pairs that are empty or wildly mismatched in length dropped.

Usage: ``python scripts/build_bible_corpus.py [--output PATH]``
"""

from __future__ import annotations

import argparse
import html
import lzma
import re
import subprocess
from pathlib import Path

MODULES = {"en": "engWEB2015eb", "es": "spaRV1909eb"}
REF = re.compile(
    r"^(?P<prefix>.*?)"
    r"(?P<ref>(?:(?:I{1,3}|IV|[1-4]) )?[A-Z][a-z]+(?: (?:of )?[A-Z]?[a-z]+)* \d+:\d+): "
    r"(?P<text>.*)$"
)
TITLE = re.compile(r"<title[^>]*>(.*?)</title>")
NOTE = re.compile(r"<note[^>]*>.*?</note>")
TAG = re.compile(r"<[^>]+>")
MAX_LENGTH_RATIO = 3.0
MAX_WORDS = 120
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "src/eightbit/assets/corpus/bible-en-es.tsv.xz"
)


def read_module(module: str) -> list[str]:
    result = subprocess.run(
        ["diatheke", "-b", module, "-k", "Genesis-Revelation"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def clean(text: str) -> str:
    text = NOTE.sub(" ", text)
    text = text.replace("</w><w", "</w> <w")
    text = TAG.sub("", text)
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?)\]])", r"\1", text)
    text = re.sub(r"([(\[¿¡])\s+", r"\1", text)
    # chapter openings are set in capitals ("EN el principio"): sentence case them
    return re.sub(
        r"^([¡¿(“]?)([A-ZÁÉÍÓÚÑ])([A-ZÁÉÍÓÚÑ]+)\b", lambda m: m[1] + m[2] + m[3].lower(), text
    )


def verses(lines: list[str]) -> dict[str, str]:
    """``{reference: cleaned text}``; headings kept on the first verse of a psalm only."""
    out: dict[str, str] = {}
    for line in lines:
        match = REF.match(line)
        if not match:
            continue
        ref, prefix, text = match["ref"], match["prefix"], match["text"]
        heading = (
            " ".join(TITLE.findall(prefix))
            if ref.startswith("Psalms ") and ref.endswith(":1")
            else ""
        )
        cleaned = clean(f"{heading} {TITLE.sub(' ', text)}")
        if cleaned:
            out[ref] = cleaned
    return out


def aligned_pairs(en: dict[str, str], es: dict[str, str]) -> list[tuple[str, str, str]]:
    pairs = []
    for ref, english in en.items():
        spanish = es.get(ref)
        if not spanish:
            continue
        n_en, n_es = len(english.split()), len(spanish.split())
        if max(n_en, n_es) > MAX_WORDS or max(n_en, n_es) > MAX_LENGTH_RATIO * min(n_en, n_es):
            continue
        pairs.append((ref, english, spanish))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    en = verses(read_module(MODULES["en"]))
    es = verses(read_module(MODULES["es"]))
    pairs = aligned_pairs(en, es)
    body = "".join(f"{ref}\t{e}\t{s}\n" for ref, e, s in pairs)
    if any("\t" in e or "\t" in s for _, e, s in pairs):
        raise SystemExit("a verse contains a tab")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    with lzma.open(tmp, "wt", encoding="utf-8", preset=9) as handle:  # deterministic
        handle.write("ref\ten\tes\n" + body)
    tmp.replace(args.output)
    print(
        f"{len(en)} English verses, {len(es)} Spanish verses, {len(pairs)} pairs -> {args.output}"
    )


if __name__ == "__main__":
    main()
