import datasets
import numpy as np
import polars as pl
import pytest
from conftest import SWORD_DIR, needs_sword, sample_corpus

from polyglot_sae.corpus.pairs import (CorpusConfig, ShardSpec, SplitConfig, load_pairs, read_shard,
                                 seeded_order, shard_block, shard_digest, shard_manifest,
                                 split_ids)
from polyglot_sae.errors import InputError


def _files(tmp_path, texts: dict[str, list[str]], raw: dict[str, bytes] | None = None):
    paths = {}
    for lang, lines in texts.items():
        path = tmp_path / f"corpus.{lang}.txt"
        path.write_bytes(raw[lang] if raw and lang in raw else ("\n".join(lines) + "\n").encode())
        paths[lang] = str(path)
    return paths


def test_files_source_builds_pairs_in_order(tmp_path):
    texts = sample_corpus(5)
    texts["en"][2] = "  spaced   out\ttext "
    pairs, refs, counts = load_pairs(CorpusConfig(source="files", files=_files(tmp_path, texts)))
    assert pairs.schema == {"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String}
    assert pairs.height == 10 and counts == {"raw_pairs": 5, "pairs": 5, "dropped_empty": 0}
    assert pairs["pair_id"].to_list() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert pairs["lang"].to_list()[:2] == ["en", "es"]
    assert pairs.filter((pl.col("pair_id") == 2) & (pl.col("lang") == "en"))["text"][0] == "spaced out text"
    assert refs["ref"].to_list() == ["0", "1", "2", "3", "4"]


def test_unequal_pair_counts_name_both_files(tmp_path):
    texts = sample_corpus(5)
    texts["es"] = texts["es"][:4]
    paths = _files(tmp_path, texts)
    with pytest.raises(InputError, match="unequal pair counts") as err:
        load_pairs(CorpusConfig(source="files", files=paths))
    assert paths["en"] in str(err.value) and paths["es"] in str(err.value)
    assert "has 5" in str(err.value) and "has 4" in str(err.value)


def test_empty_lines_are_an_error_unless_dropped(tmp_path):
    texts = sample_corpus(6)
    texts["es"][3] = "   "
    paths = _files(tmp_path, texts)
    with pytest.raises(InputError, match=r"line\(s\) \[4\]") as err:
        load_pairs(CorpusConfig(source="files", files=paths))
    assert paths["es"] in str(err.value) and "drop_empty" in str(err.value)
    pairs, refs, counts = load_pairs(CorpusConfig(source="files", files=paths, drop_empty=True))
    assert counts["dropped_empty"] == 1 and pairs["pair_id"].n_unique() == 5
    assert "3" not in refs["ref"].to_list()


def test_invalid_utf8_names_file_and_line(tmp_path):
    texts = sample_corpus(4)
    bad = ("\n".join(texts["es"][:2]) + "\n").encode() + b"caf\xe9 roto\n" + texts["es"][3].encode()
    paths = _files(tmp_path, texts, raw={"es": bad})
    with pytest.raises(InputError, match="invalid UTF-8") as err:
        load_pairs(CorpusConfig(source="files", files=paths))
    assert paths["es"] in str(err.value) and "line 3" in str(err.value)


def test_tsv_table_source(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("en\tes\nhello\thola\nbye\tadiós\n")
    pairs, _, _ = load_pairs(CorpusConfig(source="files", files={"table": str(path)}))
    assert pairs["text"].to_list() == ["hello", "hola", "bye", "adiós"]
    with pytest.raises(InputError, match="no column"):
        load_pairs(CorpusConfig(source="files", langs=("en", "fr"), files={"table": str(path)}))


def test_opus_books_loader_on_a_local_standin(tmp_path):
    texts = sample_corpus(7)
    rows = [{"id": str(i), "translation": {"en": e, "es": s}}
            for i, (e, s) in enumerate(zip(texts["en"], texts["es"]))]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(tmp_path / "opus")
    pairs, _, counts = load_pairs(CorpusConfig(source="opus_books", opus_local_path=str(tmp_path / "opus")))
    assert counts["pairs"] == 7
    assert pairs.filter(pl.col("lang") == "es")["text"].to_list() == texts["es"]


@needs_sword
def test_sword_bible_alignment_matches_pysword():
    """Our block reader against pysword's own per-verse reader, at book and testament edges."""
    from pysword.modules import SwordModules

    from polyglot_sae.corpus.sword import clean_osis, find_module, iter_verses

    modules = SwordModules(str(SWORD_DIR))
    modules.parse_modules()
    for name in ("engKJV2006eb", "spaRV1909eb"):
        ours = dict(iter_verses(find_module(SWORD_DIR, name)))
        bible = modules.get_bible_from_module(name)
        for book, chapter, verse, ref in [("Genesis", 1, 1, "Gen.1.1"), ("Psalms", 119, 176, "Ps.119.176"),
                                          ("Malachi", 4, 6, "Mal.4.6"), ("Matthew", 1, 1, "Matt.1.1"),
                                          ("3John", 1, 14, "3John.1.14"), ("Revelation of John", 22, 21, "Rev.22.21")]:
            theirs = bible.get(books=[book], chapters=[chapter], verses=[verse], clean=False)
            assert clean_osis(ours[ref]) == clean_osis(theirs), (name, ref)
    assert len(ours) == 31102


@needs_sword
def test_sword_corpus_is_cleaned_and_aligned():
    pairs, refs, counts = load_pairs(CorpusConfig(
        source="sword", sword_modules={"en": "engKJV2006eb", "es": "spaRV1909eb"}))
    assert counts["raw_pairs"] == 31102 and 0 < counts["dropped_empty"] < 100
    first = pairs.filter(pl.col("pair_id") == 0)["text"].to_list()
    assert first == ["In the beginning God created the heaven and the earth.",
                     "EN el principio crió Dios los cielos y la tierra."]
    assert refs["ref"][0] == "Gen.1.1"
    assert not pairs["text"].str.contains("<|>").any()  # no markup left


def test_missing_sword_module_is_named(tmp_path):
    (tmp_path / "mods.d").mkdir()
    with pytest.raises(InputError, match="no SWORD module named 'engXYZ'"):
        load_pairs(CorpusConfig(source="sword", sword_dir=str(tmp_path),
                                sword_modules={"en": "engXYZ", "es": "spa"}))


def test_split_is_disjoint_seeded_and_stable_under_growth():
    ids = np.arange(1000, dtype=np.uint32)
    cfg = SplitConfig(seed=3, train_pairs=300, score_pairs=200)
    train, score = split_ids(ids, cfg, "train"), split_ids(ids, cfg, "score")
    assert len(train) == 300 and len(score) == 200 and not set(train) & set(score)
    assert np.array_equal(train, split_ids(ids, cfg, "train"))
    assert not np.array_equal(train, split_ids(ids, SplitConfig(seed=4, train_pairs=300), "train"))
    grown = seeded_order(np.arange(1500, dtype=np.uint32), 3)
    old = seeded_order(ids, 3)
    assert np.array_equal(grown[grown < 1000], old)  # new pairs slot in; old keep their order


def _pairs(ids, text="x"):
    ids = np.asarray(ids, dtype=np.uint32)
    return pl.DataFrame({"pair_id": np.repeat(ids, 2), "lang": ["en", "es"] * len(ids),
                         "text": [f"{text}{i}" for i in np.repeat(ids, 2)]})


def test_shards_are_fixed_size_blocks_in_pair_id_order():
    pairs = _pairs(np.arange(10) * 3)
    shards = [shard_block(pairs.reverse(), 4, i) for i in range(3)]
    assert pl.concat(shards).equals(pairs)  # a partition, sorted, whatever the input order
    assert [s["pair_id"].to_list()[::2] for s in shards] == [[0, 3, 6, 9], [12, 15, 18, 21], [24, 27]]


def test_a_grown_corpus_keeps_its_full_shards():
    old, grown = _pairs(range(10)), _pairs(range(17))
    before, after = shard_manifest(old, 4)["shards"], shard_manifest(grown, 4)["shards"]
    assert list(before) == ["00000", "00001", "00002"] and len(after) == 5
    assert after["00000"] == before["00000"] and after["00001"] == before["00001"]
    assert after["00002"] != before["00002"]  # the short last shard filled up
    assert after["00002"]["n_pairs"] == 4 and after["00004"]["n_pairs"] == 1


def test_shard_digest_sees_any_change_of_text_language_or_pair():
    base = shard_digest(_pairs(range(3)))
    assert shard_digest(_pairs(range(3)).reverse()) == base
    assert shard_digest(_pairs(range(3), text="y")) != base
    assert shard_digest(_pairs([0, 1, 3])) != base
    assert shard_digest(_pairs(range(3)).with_columns(lang=pl.col("lang").replace("es", "fr"))) != base
    # No separator ambiguity: moving a character between two texts changes the digest.
    a = pl.DataFrame({"pair_id": [0, 0], "lang": ["en", "es"], "text": ["ab", "c"]},
                     schema={"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String})
    assert shard_digest(a) != shard_digest(a.with_columns(text=pl.Series(["a", "bc"])))


def test_read_shard_refuses_pairs_changed_since_planning(tmp_path):
    path = tmp_path / "score.parquet"
    _pairs(range(10)).write_parquet(path)
    entry = shard_manifest(_pairs(range(10)), 4)["shards"]["00001"]
    spec = ShardSpec(index=1, shard_pairs=4, **entry)
    assert read_shard(path, spec)["pair_id"].unique().sort().to_list() == [4, 5, 6, 7]
    _pairs(range(10), text="edited").write_parquet(path)
    with pytest.raises(InputError, match=r"score\.parquet: shard 00001: its pairs changed"):
        read_shard(path, spec)
