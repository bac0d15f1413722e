#!/usr/bin/env python3
"""Build the English-Spanish parallel corpus shipped with eightbit (deterministic, stdlib only).

Sources (public domain, Debian packages ``sword-text-web`` and ``sword-text-sparv``, read with
``diatheke``): World English Bible (module ``engWEB2015eb``) and Reina-Valera 1909 (module
``spaRV1909eb``). Verses are aligned by reference (both modules use the KJV versification; the
deuterocanonical books of the WEB have no Spanish counterpart and drop out) and cleaned:

* markup removed (Strong's ``<w savlm=...>`` tags, poetry ``<l>``/``<lg>``, quotation ``<q>``,
  ``<transChange>``, ``<div>``...); a tag between two words becomes a space, so words that the
  markup glued together (``God</w><w ...>created``, ``Peter,</q><q><w>and``) are separated;
  a Spanish enclitic pronoun that the translators marked as added (``oyéndo<transChange>lo``)
  is joined back onto its verb instead;
* Song of Solomon speaker labels (``<speaker>``) and footnotes (``<note>``) dropped;
* psalm headings: read as one range, the WEB repeats the last ``<title>`` in front of every
  later verse (even in Revelation, and on the first verse of the untitled Psalms 146-150). A
  psalm's own heading is taken from a lookup of its first verse alone (where ``diatheke``
  prints only the real one) and kept there, as the Reina-Valera has it; inside a psalm a heading
  is kept only where it changes (the letters of the Psalm 119 acrostic);
* the Reina-Valera sets chapter openings in capitals (``Y RESPONDIÓ Jehová``, ``¡OH Jehová``):
  such words get sentence case at a sentence start, keep a capital when the word is a proper
  noun elsewhere in the text (``Y JEHOVÁ`` -> ``Y Jehová``), and are lower-cased otherwise;
* whitespace and spacing around punctuation normalized; pairs that are empty on either side,
  longer than 120 words, or more than 3x longer on one side (in words) are dropped.

Usage: ``python scripts/build_bible_corpus.py [--output PATH]`` (needs ``diatheke`` and both
modules installed: ``apt-get install diatheke sword-text-web sword-text-sparv``).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import html
import itertools
import lzma
import re
import subprocess
from pathlib import Path

MODULES = {"en": "engWEB2015eb", "es": "spaRV1909eb"}
KEY_RANGE = "Genesis-Revelation"
REF = re.compile(
    r"^(?P<prefix>.*?)"
    r"(?P<ref>(?:(?:I{1,3}|IV) )?[A-Z][a-z]+(?: (?:of )?[A-Z]?[a-z]+)* \d+:\d+): "
    r"(?P<text>.*)$"
)
TITLE = re.compile(r"<title[^>]*>(.*?)</title>")
DROPPED = re.compile(r"<(note|speaker)\b[^>]*>.*?</\1>")
TAG = re.compile(r"<[^>]+>")
ENCLITIC = re.compile(
    r"(\w+)(?:</w>)?<transChange[^>]*>"
    r"(lo|la|le|los|las|les|me|te|se|nos|os)</transChange>"
)
# a verb form that takes an enclitic: stressed before its last letter (sáca|lo, preguntándo|le,
# Díjo|le) or an infinitive / plural imperative (pagar|la, haced|lo)
ENCLITIC_HOST = re.compile(r"(?:[áéíóú]\w*[aeiouns]|\w(?:ar|er|ir|ír|ad|ed|id))$", re.IGNORECASE)
CAPS_WORD = re.compile(r"\b[A-ZÁÉÍÓÚÑÜ]{2,}\b")
MAX_LENGTH_RATIO = 3.0
MAX_WORDS = 120
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "src/eightbit/assets/corpus/bible-en-es.tsv.xz"
)


def read_module(module: str) -> list[str]:
    """Every verse line of ``module``, as ``diatheke`` prints it (OSIS markup included)."""
    result = subprocess.run(
        ["diatheke", "-b", module, "-k", KEY_RANGE],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def psalm_headings(module: str, psalms: int = 150) -> dict[str, str]:
    """``{"Psalms N:1": heading}`` from one lookup per psalm (no stale headings there)."""
    headings = {}
    for number in range(1, psalms + 1):
        ref = f"Psalms {number}:1"
        result = subprocess.run(
            ["diatheke", "-b", module, "-k", ref], capture_output=True, text=True, check=True
        )
        match = REF.match(result.stdout.splitlines()[0])
        if match and match["ref"] == ref:
            headings[ref] = " ".join(TITLE.findall(match["prefix"]))
    return headings


def _join_enclitic(match: re.Match[str]) -> str:
    host, pronoun = match[1], match[2]
    return host + pronoun if ENCLITIC_HOST.search(host) else f"{host} {pronoun}"


def strip_markup(text: str) -> str:
    """Plain text of one verse: tags become word boundaries, spacing fixed around punctuation."""
    text = DROPPED.sub(" ", text)
    text = ENCLITIC.sub(_join_enclitic, text)
    text = TAG.sub(" ", text)
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([,.;:!?)\]”’])", r"\1", text)
    text = re.sub(r"([(\[“‘¿¡]) ", r"\1", text)
    return re.sub(r" ?— ?", "—", text)


def verses(lines: list[str], first_verse_headings: dict[str, str]) -> dict[str, str]:
    """``{reference: text}`` of one module, with the psalm headings where they belong.

    ``first_verse_headings`` (from :func:`psalm_headings`) replaces whatever heading precedes a
    psalm's first verse in ``lines``; elsewhere a heading is kept only where it changes.
    """
    out: dict[str, str] = {}
    last_heading = ""
    for line in lines:
        match = REF.match(line)
        if not match:
            continue
        ref, prefix, text = match["ref"], match["prefix"], match["text"]
        heading = " ".join(TITLE.findall(prefix)) if ref.startswith("Psalms ") else ""
        kept = first_verse_headings.get(ref, heading if heading != last_heading else "")
        last_heading = heading
        cleaned = strip_markup(f"{kept} {TITLE.sub(' ', text)}")
        if cleaned:
            out[ref] = cleaned
    return out


def proper_nouns(texts: list[str]) -> set[str]:
    """Lower-cased words written capitalized more often than not in mid-sentence position."""
    capitalized: collections.Counter[str] = collections.Counter()
    lower: collections.Counter[str] = collections.Counter()
    for text in texts:
        words = text.split()
        for previous, word in itertools.pairwise(words):
            word = word.strip("¿¡(“‘,.;:!?)”’")
            if not word or previous[-1] in ".:!?" or word.isupper():
                continue
            (capitalized if word[0].isupper() else lower)[word.lower()] += 1
    return {w for w, n in capitalized.items() if n > lower[w]}


def fix_capitals(text: str, names: set[str]) -> str:
    """Sentence case for words set in capitals (Reina-Valera chapter openings)."""

    def repl(match: re.Match[str]) -> str:
        word = match[0].lower()
        before = text[: match.start()].rstrip("¿¡(“‘ ")
        if not before or before[-1] in ".:!?" or word in names:
            return word.capitalize()
        return word

    return CAPS_WORD.sub(repl, text)


def aligned_pairs(en: dict[str, str], es: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(ref, english, spanish)`` in English canon order, implausible pairs dropped."""
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
    en = verses(read_module(MODULES["en"]), psalm_headings(MODULES["en"]))
    es = verses(read_module(MODULES["es"]), psalm_headings(MODULES["es"]))
    names = proper_nouns(list(es.values()))
    es = {ref: fix_capitals(text, names) for ref, text in es.items()}
    pairs = aligned_pairs(en, es)
    if any("\t" in e or "\t" in s or "\n" in e + s for _, e, s in pairs):
        raise SystemExit("a verse contains a tab or a newline")
    body = "ref\ten\tes\n" + "".join(f"{ref}\t{e}\t{s}\n" for ref, e, s in pairs)
    data = lzma.compress(body.encode("utf-8"), preset=9)  # deterministic: no timestamps
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(args.output)
    common = len(en.keys() & es.keys())
    print(
        f"{len(en)} English verses, {len(es)} Spanish verses, {common} in both, "
        f"{len(pairs)} pairs kept -> {args.output} (sha256 {hashlib.sha256(data).hexdigest()})"
    )


if __name__ == "__main__":
    main()
