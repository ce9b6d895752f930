"""Token sets: boolean masks over a model's vocabulary, for the logit-lens enrichment test.

Every set is built from the tokenizer's own token strings, the form ``convert_ids_to_tokens``
returns and the extract stage writes to ``token_str`` (Gemma's SentencePiece writes a leading
space as ``▁`` and unseen bytes as ``<0xC3>``; GPT-2-style byte-level BPE writes a space as ``Ġ``
and every byte as one printable character). Regexes are matched on the token's *surface form*:
the text the token stands for, with the marker turned back into a space and byte tokens decoded
(a lone byte >= 0x80, which is part of a multi-byte character, becomes U+FFFD, so it still counts
as non-ASCII).

Three kinds of set:

- regex sets (``RegexSetConfig``): leading space, capitalised, all caps, digits, punctuation,
  non-ASCII, Spanish accented vowels, ñ; the patterns are config fields.
- language sets (``LanguageSetConfig``) from a parallel corpus' token table (one row per token
  occurrence: ``pair_id, lang, token_pos, token_id, token_str``): token t is in ``lang_L`` when
  it occurs at least ``min_count`` times over the configured languages and at least
  ``min_share`` of its (size-normalised, see the config) occurrences are in language L.
- user sets from a JSON file ``{"set_name": [token strings or token ids, ...]}``. A string is
  looked up as a raw token string first (``"▁casa"``), then as a surface form (``" casa"``,
  which then matches every token with that surface). Entries that match nothing are returned in
  a report (and the caller logs them); a set left empty is an error.

The *universe* is the tokens a test compares against: the whole vocabulary minus the tokenizer's
special tokens and the tokens matching ``RegexSetConfig.exclude``  (by default Gemma's 6,242
``<unusedN>`` tokens, never seen in training, whose unembedding rows are untrained and would
pile up as ties in the rank test). Every set mask is restricted to the universe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from jaxtyping import Bool

from polyglot_sae.errors import InputError

SP_SPACE = "\u2581"  # SentencePiece's leading-space marker (Gemma, Llama)
BYTE_LEVEL_SPACE = "\u0120"  # GPT-2 byte-level BPE's space (the byte 0x20 mapped to a printable char)
_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")  # SentencePiece byte-fallback tokens
_SET_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # set names become columns, labels and file names
Marker = Literal["auto", "sentencepiece", "byte_level", "plain"]

# Latin-1 capitals and lowercase letters (the ranges skip x and ÷): Python's `re` has no \p{Lu}.
_UPPER = "A-ZÀ-ÖØ-Þ"
_LOWER = "a-zß-öø-ÿ"

DEFAULT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("leading_space", r"^ \S"),
    ("capitalised", rf"^ ?[{_UPPER}]"),
    ("all_caps", rf"^ ?[{_UPPER}]{{2,}}$"),
    ("digits", r"^ ?[0-9]+$"),
    ("punctuation", r"^ ?[!-/:-@\[-`{-~¡¿«»…–—‘’“”]+$"),
    ("non_ascii", r"[^\x00-\x7f]"),
    ("accented", r"[áéíóúüÁÉÍÓÚÜ]"),
    ("enye", r"[ñÑ]"),
)


@dataclass(frozen=True)
class RegexSetConfig:
    """Which regex sets to build and which tokens leave the universe."""

    # (set name, Python regex searched in the surface form); `search`, so anchor with ^/$
    patterns: tuple[tuple[str, str], ...] = DEFAULT_PATTERNS
    # tokens matching this (raw token string, fullmatch) leave the universe: by default
    # Gemma's never-trained <unusedN> tokens; "" keeps every non-special token
    exclude: str = r"<unused\d+>"
    # how the token strings mark spaces and bytes; auto: from the tokenizer's decoder (ByteLevel:
    # byte_level; a ▁ Replace or ByteFallback: sentencepiece), else the commoner of ▁ and Ġ at
    # the start of a token, plain when neither starts 1% of the tokens
    marker: Marker = "auto"


@dataclass(frozen=True)
class LanguageSetConfig:
    """Language sets from a parallel corpus' token table."""

    # the languages compared; one set lang_L per language
    langs: tuple[str, ...] = ("en", "es")
    # a token needs this many occurrences (all listed languages together) to be placed at all:
    # a token seen twice, both times in Spanish, says little about Spanish
    min_count: int = 5
    # and at least this share of its occurrences in one language
    min_share: float = 0.9
    # count occurrences per million tokens of each language before taking shares: the same
    # content tokenizes into more tokens in Spanish than in English, so raw counts lean Spanish
    per_language_rate: bool = True
    # set name prefix: lang_es, lang_en
    prefix: str = "lang_"


@dataclass(frozen=True)
class Vocabulary:
    """A model's token strings and the universe the tests run over."""

    strings: tuple[str, ...]  # raw token strings, index = token id (length d_vocab)
    surfaces: tuple[str, ...]  # the text each token stands for (module docstring)
    marker: str  # the marker scheme the surfaces were decoded with
    universe: Bool[np.ndarray, " d_vocab"]  # tokens the tests compare against
    special_ids: frozenset[int] = frozenset()  # left out of the universe
    # token ids the tokenizer has beyond the model's d_vocab (dropped) or lacks (blank strings)
    note: str = ""

    @property
    def size(self) -> int:
        return len(self.strings)


@dataclass(frozen=True)
class TokenSets:
    """Named token sets over one vocabulary (masks already restricted to the universe)."""

    names: tuple[str, ...]
    masks: Bool[np.ndarray, "n_sets d_vocab"]
    universe: Bool[np.ndarray, " d_vocab"]
    # set name -> how it was defined (regex, language rule, file), for provenance and captions
    definitions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.masks.shape != (len(self.names), self.universe.size):
            raise ValueError(f"masks {self.masks.shape} do not match {len(self.names)} names x "
                             f"{self.universe.size} tokens")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate set names in {self.names}")

    def mask(self, name: str) -> Bool[np.ndarray, " d_vocab"]:
        if name not in self.names:
            raise InputError("token sets", "set_name", f"no set named {name!r}",
                             f"use one of {list(self.names)}")
        return self.masks[self.names.index(name)]

    def merge(self, other: TokenSets) -> TokenSets:
        """Both collections as one (same vocabulary; names must not collide)."""
        if other.universe.size != self.universe.size:
            raise InputError("token sets", "vocabulary", f"{self.universe.size} vs "
                             f"{other.universe.size} tokens", "build both from the same model")
        clash = set(self.names) & set(other.names)
        if clash:
            raise InputError("token sets", "set_name", f"defined twice: {sorted(clash)}",
                             "rename the user sets")
        return TokenSets(self.names + other.names, np.concatenate([self.masks, other.masks]),
                         self.universe & other.universe, {**self.definitions, **other.definitions})

    def summary(self) -> pl.DataFrame:
        """``set_name, n_tokens, definition`` (sizes within the universe)."""
        return pl.DataFrame({
            "set_name": list(self.names),
            "n_tokens": self.masks.sum(axis=1).astype(np.uint32),
            "definition": [self.definitions.get(n, "") for n in self.names],
        })

    def to_frame(self) -> pl.DataFrame:
        """One row per (set, token): ``set_name, token_id:u32``."""
        rows, cols = np.nonzero(self.masks)
        return pl.DataFrame({"set_name": [self.names[r] for r in rows],
                             "token_id": cols.astype(np.uint32)})


# --- vocabulary ------------------------------------------------------------------------------

def vocab_strings(tokenizer, d_vocab: int) -> tuple[list[str], str]:
    """The raw token string of every id below ``d_vocab`` (the model's output width), and a note
    on the ids where tokenizer and model disagree ("" when they agree)."""
    n_tok = len(tokenizer)
    ids = list(range(min(n_tok, d_vocab)))
    strings = [s if s is not None else "" for s in tokenizer.convert_ids_to_tokens(ids)]
    note = ""
    if n_tok > d_vocab:
        note = f"tokenizer ids {d_vocab}..{n_tok - 1} are beyond the unembedding and were dropped"
    elif n_tok < d_vocab:
        # Models pad the unembedding to a round size; the padding ids have no string.
        note = f"unembedding ids {n_tok}..{d_vocab - 1} have no token string (padding)"
        strings += [""] * (d_vocab - n_tok)
    return strings, note


def detect_marker(strings: Sequence[str]) -> str:
    """sentencepiece, byte_level or plain, from how many tokens start with ▁ or Ġ."""
    sp = sum(s.startswith(SP_SPACE) for s in strings)
    bl = sum(s.startswith(BYTE_LEVEL_SPACE) for s in strings)
    if max(sp, bl) < 0.01 * max(len(strings), 1):
        return "plain"
    return "sentencepiece" if sp >= bl else "byte_level"


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's printable-character alphabet back to bytes (its bytes_to_unicode, inverted)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def surface_form(token: str, marker: str) -> str:
    """The text a raw token string stands for (module docstring)."""
    if marker == "sentencepiece":
        byte = _BYTE_TOKEN.match(token)
        if byte:
            value = int(byte.group(1), 16)
            return chr(value) if value < 0x80 else "\ufffd"
        return token.replace(SP_SPACE, " ")
    if marker == "byte_level":
        table = _byte_level_decoder()
        if all(c in table for c in token):
            return bytes(table[c] for c in token).decode("utf-8", errors="replace")
        return token  # an added token written in plain text
    return token


def vocabulary(tokenizer, d_vocab: int, config: RegexSetConfig = RegexSetConfig()) -> Vocabulary:
    """The model's vocabulary as token strings, surface forms and universe."""
    strings, note = vocab_strings(tokenizer, d_vocab)
    special = frozenset(int(i) for i in tokenizer.all_special_ids if int(i) < d_vocab)
    if config.marker == "auto":
        config = replace(config, marker=_tokenizer_marker(tokenizer) or "auto")
    return vocabulary_from_strings(strings, special, config, note=note)


def _tokenizer_marker(tokenizer) -> str | None:
    """The marker scheme the tokenizer's own decoder undoes (None: no fast tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    decoder = json.dumps(json.loads(backend.to_str()).get("decoder"), ensure_ascii=False)
    if '"ByteLevel"' in decoder:
        return "byte_level"
    if SP_SPACE in decoder or '"ByteFallback"' in decoder or '"Metaspace"' in decoder:
        return "sentencepiece"
    return None


def vocabulary_from_strings(strings: Sequence[str], special_ids: Iterable[int] = (),
                            config: RegexSetConfig = RegexSetConfig(), *, note: str = "") -> Vocabulary:
    """As `vocabulary`, from the token strings themselves (tests, token tables)."""
    marker = detect_marker(strings) if config.marker == "auto" else config.marker
    surfaces = tuple(surface_form(s, marker) for s in strings)
    special = frozenset(int(i) for i in special_ids)
    universe = np.ones(len(strings), dtype=bool)
    universe[[i for i in special if 0 <= i < len(strings)]] = False
    universe &= np.array([s != "" for s in strings], dtype=bool)  # padding ids
    if config.exclude:
        exclude = _compile(config.exclude, "exclude")
        universe &= ~np.array([exclude.fullmatch(s) is not None for s in strings], dtype=bool)
    return Vocabulary(tuple(strings), surfaces, marker, universe, special, note)


def _compile(pattern: str, name: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise InputError("token set config", name, f"invalid regex {pattern!r} ({err})",
                         "write a Python regular expression") from err


# --- regex sets ------------------------------------------------------------------------------

def regex_sets(vocab: Vocabulary, config: RegexSetConfig = RegexSetConfig()) -> TokenSets:
    """One set per (name, pattern): the universe tokens whose surface form matches."""
    names, masks, definitions = [], [], {}
    for name, pattern in config.patterns:
        _check_name(name, "token set config")
        regex = _compile(pattern, f"patterns[{name}]")
        masks.append(np.array([regex.search(s) is not None for s in vocab.surfaces]) & vocab.universe)
        names.append(name)
        definitions[name] = f"regex {pattern!r} on the surface form ({vocab.marker} tokens)"
    return TokenSets(tuple(names), _stack(masks, vocab.size), vocab.universe.copy(), definitions)


def _stack(masks: list[np.ndarray], size: int) -> np.ndarray:
    return np.stack(masks).astype(bool) if masks else np.zeros((0, size), dtype=bool)


def _check_name(name: str, source: str) -> None:
    if not isinstance(name, str) or not _SET_NAME.match(name):
        raise InputError(source, "set name", f"{name!r} is not a plain name",
                         "use letters, digits, '_', '.' or '-'")


# --- language sets ---------------------------------------------------------------------------

def language_sets(token_table: pl.DataFrame, vocab: Vocabulary,
                  config: LanguageSetConfig = LanguageSetConfig()) -> tuple[TokenSets, pl.DataFrame]:
    """Language sets (module docstring) and the per-token counts behind them:
    ``token_id, token_str, n_<lang>..., n_total, share_<lang>..., lang_set`` (lang_set null for
    tokens in no set), sorted by token_id, for tokens in the universe."""
    source = "token table"
    missing = {"lang", "token_id"} - set(token_table.columns)
    if missing:
        raise InputError(source, ", ".join(sorted(missing)), "missing column(s)",
                         "pass the extract stage's tokens table (pair_id, lang, token_pos, "
                         "token_id, token_str)")
    langs = list(config.langs)
    if len(langs) < 2 or len(set(langs)) != len(langs):
        raise InputError("language set config", "langs", f"{langs}", "list two or more languages")
    if not 0.5 < config.min_share <= 1.0:
        raise InputError("language set config", "min_share", f"{config.min_share}",
                         "use a share in (0.5, 1] so a token is in at most one set")
    present = set(token_table["lang"].unique().to_list())
    absent = [lang for lang in langs if lang not in present]
    if absent:
        raise InputError(source, "lang", f"no tokens in {absent} (has {sorted(present)})",
                         "set langs to languages in the corpus")
    table = token_table.filter(pl.col("lang").is_in(langs))
    top = int(table["token_id"].max())
    if top >= vocab.size:
        raise InputError(source, "token_id", f"id {top} but the model has {vocab.size} tokens",
                         "use the token table extracted with this model's tokenizer")
    _check_strings(table, vocab)

    counts = np.zeros((len(langs), vocab.size), dtype=np.int64)
    grouped = table.group_by("lang", "token_id").agg(pl.len().alias("n"))
    for row, lang in enumerate(langs):
        part = grouped.filter(pl.col("lang") == lang)
        np.add.at(counts[row], part["token_id"].cast(pl.Int64).to_numpy(),
                  part["n"].cast(pl.Int64).to_numpy())
    counts[:, ~vocab.universe] = 0  # BOS and other specials say nothing about the language
    rates = counts.astype(np.float64)
    if config.per_language_rate:
        rates /= counts.sum(axis=1, keepdims=True) / 1e6
    total = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = rates / rates.sum(axis=0, keepdims=True)
    eligible = vocab.universe & (total >= config.min_count)
    masks = [eligible & (share[row] >= config.min_share) for row in range(len(langs))]
    names = tuple(f"{config.prefix}{lang}" for lang in langs)
    for name in names:
        _check_name(name, "language set config")
    weight = "per-million rates" if config.per_language_rate else "raw counts"
    definitions = {
        name: (f">= {config.min_count} occurrences in {'+'.join(langs)} and >= {config.min_share:g} "
               f"of them ({weight}) in {lang}")
        for name, lang in zip(names, langs)
    }
    sets = TokenSets(names, _stack(masks, vocab.size), vocab.universe.copy(), definitions)

    seen = np.flatnonzero(vocab.universe & (total > 0))
    member = np.full(vocab.size, None, dtype=object)
    for name, mask in zip(names, masks):
        member[mask] = name
    detail = pl.DataFrame({
        "token_id": seen.astype(np.uint32),
        "token_str": [vocab.strings[i] for i in seen],
        **{f"n_{lang}": counts[row, seen].astype(np.uint32) for row, lang in enumerate(langs)},
        "n_total": total[seen].astype(np.uint32),
        **{f"share_{lang}": share[row, seen] for row, lang in enumerate(langs)},
        "lang_set": pl.Series(member[seen].tolist(), dtype=pl.String),
    })
    return sets, detail


def _check_strings(table: pl.DataFrame, vocab: Vocabulary) -> None:
    """The table's token strings must be this vocabulary's (else it came from another tokenizer)."""
    if "token_str" not in table.columns:
        return
    pairs = table.select("token_id", "token_str").unique()
    ids = pairs["token_id"].cast(pl.Int64).to_numpy()
    expected = np.array(vocab.strings, dtype=object)[ids]
    bad = [(int(i), s, e) for i, s, e in zip(ids, pairs["token_str"].to_list(), expected) if s != e]
    if bad:
        raise InputError("token table", "token_str", f"{len(bad)} token ids carry other strings "
                         f"than this model's tokenizer (e.g. id {bad[0][0]}: {bad[0][1]!r} vs "
                         f"{bad[0][2]!r})", "use the token table extracted with this model")


# --- user sets -------------------------------------------------------------------------------

def load_user_sets(path: str | Path, vocab: Vocabulary) -> tuple[TokenSets, dict[str, list[Any]]]:
    """Sets from a JSON file ``{"set_name": [token string or id, ...]}`` (module docstring),
    and per set the entries that matched no token (log them: they are not silently dropped)."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(path, "file", f"not readable as JSON ({err})",
                         'write {"set_name": ["token", 123, ...]}') from err
    return user_sets(spec, vocab, source=str(path))


def user_sets(spec: Any, vocab: Vocabulary, *,
              source: str = "user token sets") -> tuple[TokenSets, dict[str, list[Any]]]:
    """`load_user_sets` on an already parsed mapping."""
    if not isinstance(spec, dict) or not spec:
        raise InputError(source, "top level", f"expected a non-empty JSON object, got "
                         f"{type(spec).__name__}", 'write {"set_name": ["token", 123, ...]}')
    by_string: dict[str, list[int]] = {}
    for i, s in enumerate(vocab.strings):
        by_string.setdefault(s, []).append(i)
    by_surface: dict[str, list[int]] = {}
    for i, s in enumerate(vocab.surfaces):
        by_surface.setdefault(s, []).append(i)

    names, masks, definitions, unknown = [], [], {}, {}
    for name, entries in spec.items():
        _check_name(name, source)
        if not isinstance(entries, list):
            raise InputError(source, name, f"expected a list, got {type(entries).__name__}",
                             "list token strings or token ids")
        mask = np.zeros(vocab.size, dtype=bool)
        missed: list[Any] = []
        for entry in entries:
            if isinstance(entry, bool) or not isinstance(entry, (int, str)):
                raise InputError(source, name, f"entry {entry!r} is neither a string nor an id",
                                 "list token strings or token ids")
            if isinstance(entry, int):
                hits = [entry] if 0 <= entry < vocab.size else []
            else:
                hits = by_string.get(entry) or by_surface.get(entry, [])
            if hits:
                mask[hits] = True
            else:
                missed.append(entry)
        outside = int((mask & ~vocab.universe).sum())
        mask &= vocab.universe
        if not mask.any():
            raise InputError(source, name, f"no entry is a token of this model's vocabulary "
                             f"(unknown: {missed[:5]}{', ...' if len(missed) > 5 else ''}; "
                             f"{outside} special/excluded)",
                             "list raw token strings (e.g. '▁casa'), surface forms (' casa') or ids")
        names.append(name)
        masks.append(mask)
        unknown[name] = missed
        definitions[name] = (f"{source}: {len(entries)} entries, {int(mask.sum())} tokens, "
                             f"{len(missed)} unknown, {outside} special/excluded")
    return TokenSets(tuple(names), _stack(masks, vocab.size), vocab.universe.copy(), definitions), unknown
