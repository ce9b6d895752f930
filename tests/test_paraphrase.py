"""The paraphrase corpus: a second version of one language aligned to the pairs by reference."""

import struct
import zlib
from pathlib import Path

import polars as pl
import pytest
from conftest import SWORD_DIR, needs_sword

from polyglot_sae.atomic_io import read_metadata
from polyglot_sae.corpus.pairs import CorpusConfig, load_pairs
from polyglot_sae.errors import InputError
from polyglot_sae.corpus.paraphrase import (ParaphraseConfig, build_paraphrase, paraphrase_pairs,
                                           write_paraphrase)

HAS_WEB = (SWORD_DIR / "mods.d" / "engWEB2015eb.conf").exists()


def write_ztext(root: Path, name: str, versification: str, verses: dict[str, str]) -> None:
    """A SWORD zText module in `root` in the on-disk layout sword.py reads: mods.d/<name>.conf and
    per testament <t>.bzs (block offset, size, raw size), <t>.bzv (block, start, size per entry),
    <t>.bzz (zlib blocks, one per book); entries 0 and 1 are headings, then per book a book
    heading, and per chapter a chapter heading followed by its verses."""
    from pysword.canons import canons

    data = root / "modules" / "texts" / "ztext" / name.lower()
    data.mkdir(parents=True)
    (root / "mods.d").mkdir(exist_ok=True)
    (root / "mods.d" / f"{name.lower()}.conf").write_text(
        f"[{name}]\nDataPath=./modules/texts/ztext/{name.lower()}/\nModDrv=zText\n"
        f"SourceType=OSIS\nEncoding=UTF-8\nCompressType=ZIP\nBlockType=BOOK\n"
        f"Versification={versification.upper()}\n", encoding="utf-8")
    left = dict(verses)
    for testament in ("ot", "nt"):
        blocks: list[list[bytes]] = [[b"", b""]]  # module and testament headings
        for _name, osis, _abbr, chapter_lengths in canons[versification][testament]:
            blocks[-1].append(b"")  # book heading
            for chapter, n_verses in enumerate(chapter_lengths, start=1):
                blocks[-1].append(b"")  # chapter heading
                for verse in range(1, n_verses + 1):
                    blocks[-1].append(left.pop(f"{osis}.{chapter}.{verse}", "").encode())
            blocks.append([])
        bzs, bzv, bzz = bytearray(), bytearray(), bytearray()
        for number, entries in enumerate(blocks):
            raw, start = b"".join(entries), 0
            for entry in entries:
                bzv += struct.pack("<IIH", number if entry else 0, start if entry else 0, len(entry))
                start += len(entry)
            packed = zlib.compress(raw)
            bzs += struct.pack("<III", len(bzz), len(packed), len(raw))
            bzz += packed
        for ext, blob in (("bzs", bzs), ("bzv", bzv), ("bzz", bzz)):
            (data / f"{testament}.{ext}").write_bytes(bytes(blob))
    assert not left, f"references outside the {versification} canon: {sorted(left)}"


def _w(word: str) -> str:
    return f'<w lemma="strong:H0001">{word}</w>'


# The corpus (KJV versification, en + es); Gen.1.3 has no Spanish, so the corpus drops it.
CORPUS = {
    "en": {"Gen.1.1": f"In the {_w('beginning')} God.", "Gen.1.2": "And the earth.",
           "Gen.1.3": "And God said.", "Hos.11.12": "Ephraim compasseth me.",
           "2Cor.13.14": "The grace of the Lord.", "3John.1.14": "But I trust.",
           "Rev.22.21": "The grace of our Lord."},
    "es": {"Gen.1.1": "EN el principio.", "Gen.1.2": "Y la tierra.", "Hos.11.12": "Cercóme Ephraim.",
           "2Cor.13.14": "La gracia del Señor.", "3John.1.14": "Porque espero.",
           "Rev.22.21": "La gracia de nuestro Señor."},
}
# The paraphrase in the Darby (French) scheme, which has no Hos.11.12 or 2Cor.13.14 (its 2 Cor 13
# ends at 13) but has a 3John.1.15 and a Deut.28.69; Gen.1.2 is only a note.
PARAPHRASE = {
    "Gen.1.1": f'{_w("In")}  the beginning,<note placement="foot">Hebrew: Elohim</note> God &amp; '
               "¶ heaven.",
    "Gen.1.2": '<note placement="foot">a note only</note> ',
    "Gen.1.3": "God said.", "3John.1.14": "I hope to see you.", "3John.1.15": "Peace be to you.",
    "Deut.28.69": "These are the words.", "Rev.22.21": "The grace of the Lord Jesus.",
}


@pytest.fixture
def sword(tmp_path):
    write_ztext(tmp_path, "tstKJV", "kjv", CORPUS["en"])
    write_ztext(tmp_path, "tstRV", "kjv", CORPUS["es"])
    write_ztext(tmp_path, "tstPara", "darbyfr", PARAPHRASE)
    pairs, refs, counts = load_pairs(CorpusConfig(
        source="sword", sword_dir=str(tmp_path), sword_modules={"en": "tstKJV", "es": "tstRV"}))
    assert counts["pairs"] == 6 and refs["ref"].to_list() == [
        "Gen.1.1", "Gen.1.2", "Hos.11.12", "2Cor.13.14", "3John.1.14", "Rev.22.21"]
    return tmp_path, pairs, refs


def test_aligns_by_reference_across_versifications(sword):
    root, pairs, refs = sword
    table, counts = paraphrase_pairs(refs, pairs, ParaphraseConfig(
        lang="en", sword_module="tstPara", sword_dir=str(root)))
    assert counts == {"matched": 3, "missing_in_paraphrase": 2, "empty_in_paraphrase": 1,
                      "paraphrase_only": 3}  # Gen.1.3 (dropped by the corpus), 3John.1.15, Deut.28.69
    assert table.schema == {"pair_id": pl.UInt32, "lang": pl.String, "text": pl.String}
    assert table.rows() == [(0, "en_para", "In the beginning, God & heaven."),
                            (4, "en_para", "I hope to see you."),
                            (5, "en_para", "The grace of the Lord Jesus.")]
    # Cleaned like the corpus's own text: no markup, notes dropped, whitespace collapsed.
    assert pairs.filter(pl.col("pair_id") == 0)["text"][0] == "In the beginning God."


def test_aligns_the_given_subset_in_pair_id_order(sword):
    root, pairs, refs = sword
    subset = pairs.filter(pl.col("pair_id").is_in([5, 1, 0])).reverse()
    table, counts = paraphrase_pairs(refs.reverse(), subset, ParaphraseConfig(
        sword_module="tstPara", sword_dir=str(root)))
    assert table["pair_id"].to_list() == [0, 5]
    assert counts == {"matched": 2, "missing_in_paraphrase": 0, "empty_in_paraphrase": 1,
                      "paraphrase_only": 3}


def test_written_with_counts_in_provenance(sword, tmp_path):
    root, pairs, refs = sword
    cfg = ParaphraseConfig(sword_module="tstPara", sword_dir=str(root))
    out = tmp_path / "out" / "paraphrase.parquet"
    table, counts = build_paraphrase(refs, pairs, cfg, out)
    assert pl.read_parquet(out).equals(table)
    meta = read_metadata(out)
    assert meta["counts"] == counts and meta["label"] == "en_para"
    assert meta["config"]["sword_module"] == "tstPara"
    write_paraphrase(table.head(1), counts, out, cfg)  # rewritten in place, no temp file left
    assert pl.read_parquet(out).height == 1 and [p.name for p in out.parent.iterdir()] == [out.name]


def test_a_paraphrase_aligned_with_nothing_is_an_input_error(sword):
    root, pairs, refs = sword
    write_ztext(root, "tstOther", "darbyfr", {"Deut.28.69": "Only this.", "Gen.1.2": "<note>n</note>"})
    with pytest.raises(InputError, match=r"tstOther: corpus\.paraphrase\.sword_module: the "
                       r"paraphrase aligns with none of the corpus's 6 pairs") as err:
        paraphrase_pairs(refs, pairs, ParaphraseConfig(sword_module="tstOther", sword_dir=str(root)))
    assert "use a paraphrase of this corpus" in err.value.fix


def test_missing_module_and_bad_language_are_named(sword):
    root, pairs, refs = sword
    with pytest.raises(InputError, match="no SWORD module named 'engXYZ'"):
        paraphrase_pairs(refs, pairs, ParaphraseConfig(sword_module="engXYZ", sword_dir=str(root)))
    with pytest.raises(InputError, match=r"corpus\.paraphrase\.lang: 'fr' is not a corpus language"):
        paraphrase_pairs(refs, pairs, ParaphraseConfig(lang="fr", sword_module="tstPara",
                                                       sword_dir=str(root)))
    with pytest.raises(InputError, match=r"corpus\.paraphrase\.source: a files paraphrase aligns by row"):
        paraphrase_pairs(refs, pairs, ParaphraseConfig(source="files", file="x.tsv", column="p"))


def test_files_paraphrase_aligns_by_raw_row(tmp_path):
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("en\tes\none\tuno\n\tdos\nthree\ttres\nfour\tcuatro\n", encoding="utf-8")
    pairs, refs, _ = load_pairs(CorpusConfig(source="files", files={"table": str(corpus)},
                                             drop_empty=True))
    assert refs["ref"].to_list() == ["0", "2", "3"]  # raw row numbers; row 1 dropped
    para = tmp_path / "para.tsv"
    para.write_text("id\ten_para\n0\tOne  alone\n1\tTwo\n2\t \n3\tFour\n4\tFive\n", encoding="utf-8")
    cfg = ParaphraseConfig(source="files", file=str(para), column="en_para")
    table, counts = paraphrase_pairs(refs, pairs, cfg)
    assert table.rows() == [(0, "en_para", "One alone"), (2, "en_para", "Four")]
    assert counts == {"matched": 2, "missing_in_paraphrase": 0, "empty_in_paraphrase": 1,
                      "paraphrase_only": 2}  # row 1 (dropped by the corpus) and row 4
    pl.DataFrame({"p": ["One", None, "Three", "Four"]}).write_parquet(tmp_path / "para.parquet")
    table, _ = paraphrase_pairs(refs, pairs, ParaphraseConfig(
        source="files", file=str(tmp_path / "para.parquet"), column="p"))
    assert table["text"].to_list() == ["One", "Three", "Four"]
    lines = tmp_path / "para.txt"
    lines.write_text("One\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"para\.txt: corpus\.paraphrase\.file: 1 rows, but"):
        paraphrase_pairs(refs, pairs, ParaphraseConfig(source="files", file=str(lines)))
    with pytest.raises(InputError, match=r"corpus\.paraphrase\.column: no column named 'nope'"):
        paraphrase_pairs(refs, pairs, ParaphraseConfig(source="files", file=str(para), column="nope"))


@needs_sword
@pytest.mark.skipif(not HAS_WEB, reason="Debian sword-text-web (engWEB2015eb) is not installed")
def test_web_aligns_with_the_kjv_rv1909_corpus():
    pairs, refs, corpus_counts = load_pairs(CorpusConfig(
        source="sword", sword_modules={"en": "engKJV2006eb", "es": "spaRV1909eb"}))
    table, counts = paraphrase_pairs(refs, pairs, ParaphraseConfig(
        lang="en", sword_module="engWEB2015eb"))
    print("WEB vs KJV-RV1909:", counts)
    assert counts["matched"] + counts["missing_in_paraphrase"] + counts["empty_in_paraphrase"] \
        == corpus_counts["pairs"]
    assert counts["matched"] > 31000 and counts["empty_in_paraphrase"] < 20
    assert counts["paraphrase_only"] > 6000  # the deuterocanon
    by_ref = dict(refs.join(table, on="pair_id").select("ref", "text").iter_rows())
    assert by_ref["Gen.1.1"] == "In the beginning, God created the heavens and the earth."
    assert by_ref["Ps.23.1"].startswith("A Psalm by David. Yahweh is my shepherd")
    assert not table["text"].str.contains("<|>").any()
