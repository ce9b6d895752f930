"""Align a paraphrase (a second version of one corpus language) to the corpus's pairs.

The corpus's ``refs.parquet`` (``pair_id:uint32, ref:string``) names each pair's source
reference: an OSIS verse reference (``Gen.1.1``) for a sword corpus, the 0-based row number of
the raw files (``"0"``, ``"1"``, ...) for a files or opus_books corpus. The paraphrase is read
into the same kind of references and joined on them, so a paraphrase in another versification
(the WEB's NRSVA beside the KJV) aligns verse by verse wherever the reference exists in both;
where a scheme splits or moves verses (3 John 1:14-15, Romans 16:25-27) the texts at the same
reference can differ in extent, as they do between any two versions.

The output table has the pairs layout, ``pair_id:uint32, lang:string, text:string``, with
``lang`` the label ``f"{cfg.lang}_para"``, one row per corpus pair whose reference has a
non-empty paraphrase, in pair-id order. Texts are cleaned exactly as the corpus cleans its own.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from polyglot_sae.atomic_io import write_parquet
from polyglot_sae.corpus.pairs import PAIRS_SCHEMA, _clean, _read_lines
from polyglot_sae.errors import InputError

_TABLE_SUFFIXES = (".parquet", ".tsv")


@dataclass(frozen=True)
class ParaphraseConfig:
    """Where the paraphrase of one corpus language comes from (config key corpus.paraphrase)."""

    # the corpus language it paraphrases (a code of corpus.langs); its rows get lang f"{lang}_para"
    lang: str = "en"
    # sword: a SWORD zText module aligned by verse reference (a sword corpus);
    # files: a local file aligned row by row with the corpus's raw rows (a files corpus)
    source: Literal["sword", "files"] = "sword"
    # sword: the module name (e.g. engWEB2015eb, Debian's sword-text-web) and the SWORD library
    sword_module: str = "engWEB2015eb"
    sword_dir: str = "/usr/share/sword"
    # files: a .parquet or .tsv table (then `column` names the paraphrase column), or a UTF-8
    # text file with one sentence per line; row i paraphrases the corpus's raw row i (ref "i"),
    # the same row numbering as corpus.files, blank rows included
    file: str | None = None
    column: str | None = None

    @property
    def label(self) -> str:
        """The ``lang`` value of the paraphrase's rows."""
        return f"{self.lang}_para"

    @property
    def origin(self) -> str:
        """What the paraphrase was read from, for messages and provenance."""
        if self.source == "sword":
            return f"{self.sword_dir}: module {self.sword_module}"
        return str(self.file)


def _read_sword(cfg: ParaphraseConfig) -> dict[str, str]:
    from polyglot_sae.corpus.sword import clean_osis, find_module, iter_verses

    module = find_module(cfg.sword_dir, cfg.sword_module)
    return {ref: _clean(clean_osis(text)) for ref, text in iter_verses(module)}


def _read_table(path: Path, column: str | None) -> list[str]:
    if path.suffix == ".parquet":
        df = pl.read_parquet(path)
    else:  # the corpus's TSV convention: a header row, tab-separated, no quoting
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        df = pl.DataFrame(rows) if rows else pl.DataFrame()
    if not column or column not in df.columns:
        problem = f"no column named {column!r}" if column else "no paraphrase column given"
        raise InputError(path, "corpus.paraphrase.column", f"{problem} (columns: {df.columns})",
                         "set corpus.paraphrase.column to the column holding the paraphrase")
    return [s or "" for s in df[column].cast(pl.String).to_list()]


def _read_files(cfg: ParaphraseConfig) -> dict[str, str]:
    if not cfg.file:
        raise InputError("config", "corpus.paraphrase.file", "no paraphrase file given",
                         "set corpus.paraphrase.file to a .parquet/.tsv table or a text file")
    path = Path(cfg.file)
    if not path.is_file():
        raise InputError(path, "corpus.paraphrase.file", "no such file",
                         "point corpus.paraphrase.file at an existing file")
    rows = _read_table(path, cfg.column) if path.suffix in _TABLE_SUFFIXES else _read_lines(path)
    return {str(i): _clean(text) for i, text in enumerate(rows)}


def read_paraphrase(cfg: ParaphraseConfig) -> dict[str, str]:
    """Every reference of the paraphrase with its cleaned text ('' where empty), in source order."""
    if cfg.source == "sword":
        return _read_sword(cfg)
    if cfg.source == "files":
        return _read_files(cfg)
    raise InputError("config", "corpus.paraphrase.source", f"unknown source {cfg.source!r}",
                     "use sword or files")


def _corpus_refs(refs: pl.DataFrame, pairs: pl.DataFrame, cfg: ParaphraseConfig) -> pl.DataFrame:
    """(pair_id, ref) of the pairs in `pairs`, checked against refs, sorted by pair id."""
    for name, df, cols in (("refs", refs, ("pair_id", "ref")), ("pairs", pairs, ("pair_id", "lang"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputError(f"{name} table", "columns", f"missing column(s) {missing} "
                             f"(columns: {df.columns})", f"pass the corpus's {name}.parquet")
    langs = sorted(pairs["lang"].unique().to_list())
    if cfg.lang not in langs:
        raise InputError("config", "corpus.paraphrase.lang", f"{cfg.lang!r} is not a corpus "
                         f"language (pairs have {langs})", "set it to one of corpus.langs")
    if refs["pair_id"].n_unique() != refs.height:
        raise InputError("refs table", "pair_id", "duplicate pair ids",
                         "pass the corpus's refs.parquet unchanged")
    ids = pairs.select(pl.col("pair_id").cast(pl.UInt32)).unique()
    joined = ids.join(refs.select(pl.col("pair_id").cast(pl.UInt32), pl.col("ref").cast(pl.String)),
                      on="pair_id", how="left")
    orphans = joined.filter(pl.col("ref").is_null())["pair_id"].sort().to_list()
    if orphans:
        raise InputError("refs table", "pair_id", f"{len(orphans)} pair(s) without a reference "
                         f"(e.g. {orphans[:5]})", "pass the refs.parquet written with these pairs")
    return joined.sort("pair_id")


def paraphrase_pairs(
    refs: pl.DataFrame, pairs: pl.DataFrame, cfg: ParaphraseConfig
) -> tuple[pl.DataFrame, dict[str, int]]:
    """(table ``pair_id:uint32, lang:string, text:string``, counts) aligning the paraphrase to
    the pairs of `pairs` through `refs` (the corpus's pairs.parquet and refs.parquet, or a subset
    of the pairs, e.g. a split).

    counts: ``matched`` (rows written), ``missing_in_paraphrase`` (pairs whose reference the
    paraphrase lacks), ``empty_in_paraphrase`` (pairs whose paraphrase is empty after cleaning),
    ``paraphrase_only`` (non-empty paraphrase entries whose reference has no pair in `refs`).
    matched + missing + empty is the number of pairs in `pairs`.
    """
    corpus = _corpus_refs(refs, pairs, cfg)
    if cfg.source == "files":
        bad = corpus.filter(~pl.col("ref").str.contains(r"^\d+$"))["ref"].head(3).to_list()
        if bad:
            raise InputError("config", "corpus.paraphrase.source", f"a files paraphrase aligns "
                             f"by row number, but the corpus's references are e.g. {bad}",
                             "use source: sword for a sword corpus")
    para = read_paraphrase(cfg)
    if cfg.source == "files" and corpus.height:
        needed = int(corpus["ref"].cast(pl.Int64).max()) + 1
        if len(para) < needed:
            raise InputError(cfg.file, "corpus.paraphrase.file", f"{len(para)} rows, but the "
                             f"corpus has pairs up to row {needed}", "align the paraphrase row by "
                             "row with the corpus files (blank rows included)")
    texts = [para.get(ref) for ref in corpus["ref"].to_list()]
    keep = [i for i, t in enumerate(texts) if t]
    corpus_refs = set(refs["ref"].cast(pl.String).to_list())
    counts = {
        "matched": len(keep),
        "missing_in_paraphrase": sum(t is None for t in texts),
        "empty_in_paraphrase": sum(t == "" for t in texts),
        "paraphrase_only": sum(1 for ref, t in para.items() if t and ref not in corpus_refs),
    }
    if not keep:
        field = ("corpus.paraphrase.sword_module" if cfg.source == "sword"
                 else "corpus.paraphrase.file")
        raise InputError(cfg.origin, field, f"the paraphrase aligns with none of the corpus's "
                         f"{corpus.height} pairs ({counts['missing_in_paraphrase']} references "
                         f"missing, {counts['empty_in_paraphrase']} empty)",
                         "use a paraphrase of this corpus: the same kind of references (OSIS "
                         "verses for a sword corpus, row numbers for a files corpus) and non-empty "
                         "text for them")
    ids = corpus["pair_id"]
    table = pl.DataFrame({"pair_id": ids.gather(keep), "lang": [cfg.label] * len(keep),
                          "text": [texts[i] for i in keep]}, schema=PAIRS_SCHEMA)
    return table, counts


def write_paraphrase(
    table: pl.DataFrame,
    counts: dict[str, int],
    out_path: str | Path,
    cfg: ParaphraseConfig,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the table from ``paraphrase_pairs`` atomically, its counts and config in the
    provenance (``atomic_io.read_metadata``)."""
    meta = {"stage": "paraphrase", "label": cfg.label, "origin": cfg.origin,
            "config": asdict(cfg), "counts": dict(counts), **(extra or {})}
    return write_parquet(table.cast(PAIRS_SCHEMA), out_path, meta)


def build_paraphrase(
    refs: pl.DataFrame, pairs: pl.DataFrame, cfg: ParaphraseConfig, out_path: str | Path
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``paraphrase_pairs`` then ``write_paraphrase``: (table, counts)."""
    table, counts = paraphrase_pairs(refs, pairs, cfg)
    write_paraphrase(table, counts, out_path, cfg)
    return table, counts
