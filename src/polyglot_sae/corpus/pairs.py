"""Parallel corpora -> the pairs table, the seeded train/score split, and shards.

pairs.parquet: ``pair_id:uint32, lang:string, text:string``, one row per (pair, language), in
source order; pairs with an empty side are dropped and counted. Pair ids are positions in the
cleaned corpus, so they are stable as long as the source is.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from polyglot_sae.errors import InputError

PAIRS_SCHEMA = {"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String}


@dataclass(frozen=True)
class CorpusConfig:
    """Where the aligned sentences come from."""

    # sword: Debian SWORD Bibles aligned by verse; files: local aligned files; opus_books: OPUS Books
    # through `datasets` (hub), or a local copy saved with `Dataset.save_to_disk`.
    source: Literal["sword", "files", "opus_books"] = "sword"
    # language codes, in the order used everywhere downstream
    langs: tuple[str, ...] = ("en", "es")
    # sword: the SWORD library folder and the module name per language
    sword_dir: str = "/usr/share/sword"
    sword_modules: Mapping[str, str] = field(default_factory=dict)
    # files: per language a UTF-8 text file with one sentence per line (aligned by line), or one
    # .tsv/.parquet table under the key "table" with one column per language
    files: Mapping[str, str] = field(default_factory=dict)
    # opus_books: hub dataset name/config/split, or a local save_to_disk folder used instead
    opus_name: str = "Helsinki-NLP/opus_books"
    opus_config: str = "en-es"
    opus_split: str = "train"
    opus_local_path: str | None = None
    # files source: an empty line is an error (a sign of misalignment) unless this is true
    drop_empty: bool = False


def _clean(text: str) -> str:
    return " ".join(text.split())


def _read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(path, f"line {line}", f"invalid UTF-8 at byte {err.start}",
                         "re-encode the file as UTF-8 (e.g. `iconv -t UTF-8`)") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _load_files(cfg: CorpusConfig) -> dict[str, list[str]]:
    if "table" in cfg.files:
        path = Path(cfg.files["table"])
        if path.suffix == ".parquet":
            df = pl.read_parquet(path)
        else:
            with path.open(encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
            df = pl.DataFrame(rows) if rows else pl.DataFrame()
        missing = [lang for lang in cfg.langs if lang not in df.columns]
        if missing:
            raise InputError(path, "columns", f"no column for language(s) {missing} "
                             f"(columns: {df.columns})", "name one column per language code")
        return {lang: [s or "" for s in df[lang].cast(pl.String).to_list()] for lang in cfg.langs}
    missing = [lang for lang in cfg.langs if lang not in cfg.files]
    if missing:
        raise InputError("config", "corpus.files", f"no file for language(s) {missing}",
                         "give one aligned file per language in corpus.files")
    columns = {lang: _read_lines(Path(cfg.files[lang])) for lang in cfg.langs}
    counts = {lang: len(v) for lang, v in columns.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{cfg.files[lang]} has {n}" for lang, n in counts.items())
        raise InputError(cfg.files[cfg.langs[0]], "line count", f"unequal pair counts: {detail}",
                         "the files must be aligned line by line, with the same number of lines")
    return columns


def _load_sword(cfg: CorpusConfig) -> tuple[dict[str, list[str]], list[str]]:
    from polyglot_sae.corpus.sword import clean_osis, find_module, iter_verses

    texts: dict[str, list[str]] = {}
    refs: list[str] | None = None
    for lang in cfg.langs:
        if lang not in cfg.sword_modules:
            raise InputError("config", "corpus.sword.modules", f"no module for language {lang!r}",
                             "map every language code to a SWORD module name")
        module = find_module(cfg.sword_dir, cfg.sword_modules[lang])
        verses = list(iter_verses(module))
        these_refs = [r for r, _ in verses]
        if refs is not None and these_refs != refs:
            raise InputError(module.data_dir, "Versification", "modules use different versifications",
                             "choose modules with the same versification (e.g. KJV)")
        refs = these_refs
        texts[lang] = [clean_osis(t) for _, t in verses]
    return texts, refs or []


def _load_opus(cfg: CorpusConfig) -> dict[str, list[str]]:
    import datasets

    if cfg.opus_local_path and Path(cfg.opus_local_path).suffix == ".parquet":
        # the hub split as the fetch_corpus rule wrote it (polyglot_sae.hub.fetch)
        ds = datasets.Dataset(datasets.table.InMemoryTable(pq.read_table(cfg.opus_local_path)))
    elif cfg.opus_local_path:
        ds = datasets.load_from_disk(cfg.opus_local_path)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[cfg.opus_split]
    else:  # the hub path, for users with access
        ds = datasets.load_dataset(cfg.opus_name, cfg.opus_config, split=cfg.opus_split)
    if "translation" not in ds.column_names:
        raise InputError(cfg.opus_local_path or cfg.opus_name, "translation",
                         f"no 'translation' column (columns: {ds.column_names})",
                         "use an OPUS-format dataset: rows of {'translation': {lang: text}}")
    rows = ds["translation"]
    return {lang: [row.get(lang) or "" for row in rows] for lang in cfg.langs}


def load_pairs(cfg: CorpusConfig) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """(pairs table, refs table ``pair_id, ref``, counts) for the configured source."""
    refs: list[str] | None = None
    if cfg.source == "sword":
        columns, refs = _load_sword(cfg)
    elif cfg.source == "files":
        columns = _load_files(cfg)
    elif cfg.source == "opus_books":
        columns = _load_opus(cfg)
    else:
        raise InputError("config", "corpus.source", f"unknown source {cfg.source!r}",
                         "use one of sword, files, opus_books")
    n_raw = len(columns[cfg.langs[0]])
    if refs is None:
        refs = [str(i) for i in range(n_raw)]
    cleaned = {lang: [_clean(t) for t in columns[lang]] for lang in cfg.langs}
    keep = [i for i in range(n_raw) if all(cleaned[lang][i] for lang in cfg.langs)]
    if cfg.source == "files" and not cfg.drop_empty and len(keep) < n_raw:
        empty = [i + 1 for i in range(n_raw) if i not in set(keep)]
        lang = next(l for l in cfg.langs if any(not cleaned[l][i - 1] for i in empty))
        source = cfg.files.get(lang, cfg.files.get("table", ""))
        raise InputError(source, f"line(s) {empty[:10]}", f"{len(empty)} empty or blank line(s)",
                         "remove them from every language's file, or set corpus.drop_empty: true "
                         "to drop those pairs")
    if not keep:
        raise InputError("config", "corpus", "no non-empty aligned pairs", "check the corpus source")
    pair_ids = np.arange(len(keep), dtype=np.uint32)
    pairs = pl.DataFrame(
        {
            "pair_id": np.repeat(pair_ids, len(cfg.langs)),
            "lang": [lang for _ in keep for lang in cfg.langs],
            "text": [cleaned[lang][i] for i in keep for lang in cfg.langs],
        },
        schema=PAIRS_SCHEMA,
    )
    ref_table = pl.DataFrame({"pair_id": pair_ids, "ref": [refs[i] for i in keep]},
                             schema={"pair_id": pl.UInt32, "ref": pl.String})
    counts = {"raw_pairs": n_raw, "pairs": len(keep), "dropped_empty": n_raw - len(keep)}
    return pairs, ref_table, counts


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def seeded_order(pair_ids: Sequence[int] | np.ndarray, seed: int) -> np.ndarray:
    """Pair ids in a seeded pseudo-random order where each pair's key depends only on (seed, id),
    so adding pairs to a corpus inserts them without reshuffling the others."""
    ids = np.asarray(pair_ids, dtype=np.uint64)
    keys = _splitmix64(ids ^ _splitmix64(np.array([seed], dtype=np.uint64)))
    return ids[np.argsort(keys, kind="stable")].astype(np.uint32)


@dataclass(frozen=True)
class SplitConfig:
    """Which pairs train the SAE and which are scored (disjoint, seeded)."""

    seed: int = 0  # seed of the pair order
    train_pairs: int = 0  # pairs held for SAE training (first in the seeded order)
    score_pairs: int | None = None  # pairs scored (next in the order); None = all the rest


def split_ids(pair_ids: np.ndarray, cfg: SplitConfig, part: Literal["train", "score"]) -> np.ndarray:
    order = seeded_order(pair_ids, cfg.seed)
    if cfg.train_pairs >= len(order):
        raise InputError("config", "split.train_pairs", f"{cfg.train_pairs} training pairs requested "
                         f"but the corpus has {len(order)}", "lower split.train_pairs")
    if part == "train":
        chosen = order[: cfg.train_pairs]
    else:
        end = None if cfg.score_pairs is None else cfg.train_pairs + cfg.score_pairs
        chosen = order[cfg.train_pairs : end]
    return np.sort(chosen)


def _with_shard(pairs: pl.DataFrame, shard_pairs: int) -> pl.DataFrame:
    """The pairs sorted, each row with its shard: its pair's rank by id, over shard_pairs."""
    return pairs.sort("pair_id", "lang").with_columns(
        shard=(pl.col("pair_id").rank("dense") - 1) // shard_pairs)


def shard_block(pairs: pl.DataFrame, shard_pairs: int, shard: int) -> pl.DataFrame:
    """Shard `shard`: the pairs ranked [shard * shard_pairs, (shard + 1) * shard_pairs) by pair id.

    Fixed-size blocks in pair-id order, not a split into a fixed number of parts: pairs appended
    to a corpus get new, larger ids, so they fill the last block and new ones and leave every
    earlier shard (and its extraction) as it was."""
    return _with_shard(pairs, shard_pairs).filter(pl.col("shard") == shard).drop("shard")


def shard_digest(pairs: pl.DataFrame) -> str:
    """A content hash of a shard's pairs (ids, languages, texts): extraction reruns exactly when
    it changes, whatever happened to the file the shard was cut from."""
    digest = hashlib.sha256()
    for pair_id, lang, text in pairs.sort("pair_id", "lang").select("pair_id", "lang", "text").iter_rows():
        digest.update(f"{pair_id}\t{lang}\t{len(text)}\t{text}\n".encode())
    return digest.hexdigest()


def shard_id(shard: int) -> str:
    return f"{shard:05d}"


def shard_manifest(pairs: pl.DataFrame, shard_pairs: int) -> dict:
    """Every shard of `pairs` with its pair count and content digest (what extraction depends on)."""
    blocks = _with_shard(pairs, shard_pairs).partition_by("shard", maintain_order=True)
    shards = {shard_id(b["shard"][0]): {"n_pairs": b["pair_id"].n_unique(),
                                       "digest": shard_digest(b.drop("shard"))} for b in blocks}
    return {"shard_pairs": shard_pairs, "shards": shards}


@dataclass(frozen=True)
class ShardSpec:
    """One extraction job's pairs, as the `shards` manifest described them."""

    index: int  # block number in pair-id order
    shard_pairs: int  # pairs per block
    digest: str  # shard_digest of the block when the manifest was written
    n_pairs: int = 0  # pairs in the block (the last block may be short)


def read_shard(path: str | Path, spec: ShardSpec) -> pl.DataFrame:
    """The shard's pairs, checked against the manifest: a split file rewritten after the DAG was
    planned must not be extracted under the old shard's name."""
    block = shard_block(pl.read_parquet(path), spec.shard_pairs, spec.index)
    if shard_digest(block) != spec.digest:
        raise InputError(str(path), f"shard {shard_id(spec.index)}",
                         "its pairs changed after the workflow planned this job",
                         "run snakemake again: it re-plans the shards from the current split")
    return block
