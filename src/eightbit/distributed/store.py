"""The work directory of a sharded run: one file per finished shard, and a manifest.

Every file is written atomically as its shard finishes, so a run that dies (a worker, a node,
the driver) loses at most the shards in flight; a rerun with the same key resumes from the rest.
A work directory holding another job's shards (another key) is cleared, never reused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from eightbit.atomic import write_text_atomic
from eightbit.data.batching import restore_order
from eightbit.errors import EightbitError
from eightbit.models.marian import Translation

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class WorkDirError(EightbitError):
    """A work directory exists but is not one of ours."""


def work_dir_for(output: str | os.PathLike[str]) -> Path:
    """The work directory beside an output file: ``FILE.shards``."""
    path = Path(output)
    return path.with_name(path.name + ".shards")


class ShardStore:
    """Finished shards of one job (identified by ``key``) in ``directory``."""

    def __init__(
        self, directory: str | os.PathLike[str], key: str, shards: Sequence[Sequence[int]]
    ):
        self.directory = Path(directory)
        self.key = key
        self.shards = [list(s) for s in shards]
        self._open()

    def _open(self) -> None:
        manifest = self.directory / MANIFEST
        if self.directory.exists() and not manifest.is_file() and any(self.directory.iterdir()):
            raise WorkDirError(
                f"{self.directory}: exists without {MANIFEST}; expected an eightbit work "
                "directory (remove it or choose another output)"
            )
        if manifest.is_file() and self._manifest_key(manifest) != self.key:
            log.warning("%s: holds another job's shards; starting afresh", self.directory)
            self.remove()
        if not manifest.is_file():
            record = {"key": self.key, "shards": len(self.shards)}
            write_text_atomic(manifest, json.dumps(record) + "\n")

    @staticmethod
    def _manifest_key(manifest: Path) -> str | None:
        try:
            return json.loads(manifest.read_text(encoding="utf-8")).get("key")
        except (ValueError, AttributeError):
            return None  # unreadable: treated as another job's

    def _path(self, index: int) -> Path:
        return self.directory / f"shard-{index:06d}.json"

    def _read(self, index: int) -> list[Translation] | None:
        """A finished shard's translations, or None when missing or not this shard's."""
        try:
            record = json.loads(self._path(index).read_text(encoding="utf-8"))
            if record["indices"] != self.shards[index]:
                return None
            return [Translation(text, bool(hit)) for text, hit in record["translations"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def finished(self) -> set[int]:
        """Indices of the shards already stored."""
        return {i for i in range(len(self.shards)) if self._read(i) is not None}

    def write(self, index: int, translations: Sequence[Translation]) -> None:
        """Store one finished shard (atomically)."""
        if len(translations) != len(self.shards[index]):
            raise ValueError(
                f"shard {index}: {len(translations)} translations for "
                f"{len(self.shards[index])} sentences"
            )
        record = {
            "indices": self.shards[index],
            "translations": [[t.text, t.hit_length_limit] for t in translations],
        }
        write_text_atomic(self._path(index), json.dumps(record, ensure_ascii=False) + "\n")

    def assemble(self) -> list[Translation]:
        """Every sentence's translation, in input order; all shards must be finished."""
        outputs = []
        for index in range(len(self.shards)):
            shard = self._read(index)
            if shard is None:
                raise WorkDirError(f"{self._path(index)}: missing or damaged; rerun to redo it")
            outputs.append(shard)
        return restore_order(self.shards, outputs)

    def remove(self) -> None:
        """Delete the work directory (after the output is safely written)."""
        shutil.rmtree(self.directory, ignore_errors=True)
