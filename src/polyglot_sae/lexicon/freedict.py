"""FreeDict dictionaries (dictd format) as a bilingual lexicon with a tolerant word matcher.

Files. Debian's ``dict-freedict-{src}-{tgt}`` installs ``/usr/share/dictd/freedict-{src}-{tgt}
.index`` and ``.dict.dz`` (ISO 639-3 names: eng, spa, fra, deu, ...). Each index line is
``headword TAB offset TAB length`` (a 4th field, the original headword, is allowed), the numbers
in dictd's base64 (``A-Za-z0-9+/`` as the digits 0..63, most significant first, no padding);
``.dict.dz`` is dictzip, which plain gzip reads, and the numbers are byte positions in the
decompressed text. Headwords starting with ``00database`` are metadata and skipped.

Entries. FreeDict renders its TEI as plain text: a headword line ``word /pronunciation/ <pos>``,
then translation lines, optionally numbered senses (``1. a, b``), translations separated by
``,`` or ``;``, with ``<gram>``, ``[domain]`` and ``(note)`` labels around them; the richer
dictionaries (deu-eng) add indented ``Note:``/``Synonyms:``/``see:`` lines and quoted examples,
which are skipped (synonyms and cross-references are same-language words, not translations).
The old Ergane-derived eng-spa/spa-eng files also hold multiword entries whose spaces were lost
(``day -> billeteporundía``); they become single odd tokens that rarely match anything.

Matching (``Lexicon.match``), on folded words (NFKD, accents dropped, casefolded, punctuation to
spaces):

1. *direct*: a one-word translation pair from either direction (``god``/``dios``).
2. *phrase*: a one-word headword against a translation of at most ``max_phrase_tokens``
   tokens with exactly one content token, either way round (``below``/``debajo de``,
   ``renounce``/``renunciar a``, ``pine tree``/``pino``). Function tokens are those in many of
   the language's multiword phrases (``de``, ``the``, ``to``, and in eng-spa ``tree``) or shorter
   than ``min_phrase_token_len``; a phrase with two content tokens (``islas filipinas``,
   ``reloj de pulsera``, ``water colour``) gives no link, as no one token carries its meaning.
3. *inflection*, tried on both words when 1-2 fail: (a) a plural suffix from
   ``plural_suffixes`` is undone when that gives a dictionary form, even for a word with an
   entry of its own (``reyes->rey``, ``años->año``, ``padres->padre``, ``cities->city``);
   (b) a word with no translation of its own is also read as every dictionary form f of its
   language that it inflects: the word has 1..``max_tail`` characters after the common prefix,
   f has at most ``max_tail``, and either f is all prefix (at least ``min_stem`` long:
   ``walked->walk``) or the prefix is at least ``min_prefix`` long (``santos->santa``,
   ``habló->hablar``, ``hablaron->hablar``). A word with its own entry is never re-read (``hija``
   stays ``daughter``, not ``hijo``; ``casado`` is not ``casa``), a word is never a bare prefix
   of its lemma (``came`` is not ``camel``, ``habla`` is not ``hablar``), and longer endings are
   refused (``hermano``/``hermoso``: tails of 3). Derivations with short endings slip through
   (``years`` also reads as ``yearly``). Irregular and stem-changing verbs (``said``/``dijo``
   against ``say``/``decir``, ``men``/``man``) are not recovered: that needs a lemmatizer.
4. *identical*: the same folded word of at least ``identical_min_len`` characters that is not a
   standalone dictionary word in both languages (proper names: ``david``, ``israel``); short or
   both-sided words (``son``, ``once``) are left to the dictionary, since they are false friends.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

DEFAULT_DICT_DIR = "/usr/share/dictd"

# ISO 639-1 (the project's language codes) -> ISO 639-3 (FreeDict's file names). FreeDict uses
# the individual-language code where a macrolanguage has one (Swahili: swh, not swa).
ISO_639_3: dict[str, str] = {
    "af": "afr", "ar": "ara", "br": "bre", "ca": "cat", "cs": "ces", "cy": "cym", "da": "dan",
    "de": "deu", "el": "ell", "en": "eng", "eo": "epo", "es": "spa", "fi": "fin", "fr": "fra",
    "ga": "gle", "gd": "gla", "hi": "hin", "hr": "hrv", "hu": "hun", "is": "isl", "it": "ita",
    "ja": "jpn", "la": "lat", "lt": "lit", "nl": "nld", "no": "nor", "nb": "nob", "pl": "pol",
    "pt": "por", "ro": "ron", "ru": "rus", "sk": "slk", "sl": "slv", "sr": "srp", "sv": "swe",
    "sw": "swh", "tr": "tur", "uk": "ukr", "zh": "zho", "ku": "kur", "ckb": "ckb", "kmr": "kmr",
}

# dictd's base64: the digit values are the positions in this alphabet ('A' = 0, '/' = 63).
_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_NON_WORD = re.compile(r"[\W_]+")  # anything but letters/digits (any script) becomes a space
_PRON = re.compile(r"\s/[^/\n]*/")  # " /pronunciation/" (a slash inside a headword has no space)
_LABELS = re.compile(r"<[^>]*>|\[[^\]]*\]|\([^)]*\)|\{[^}]*\}")  # <gram> [domain] (note) {ref}
_SKIP_LINE = re.compile(
    r"^(?:notes?|synonyms?|antonyms?|see(?: also)?|usage|etymology|examples?)\s*:", re.I)
_SENSE = re.compile(r"^\d+\.\s+")  # "1. " sense numbers
_SEPARATORS = re.compile(r"[,;:]")  # between alternative translations


class LexiconMissing(InputError):
    """A FreeDict dictionary that the check needs is not installed."""


@dataclass(frozen=True)
class LexiconConfig:
    """How generously two words count as translations (see the module docstring for the rules)."""

    # a translation phrase of up to this many tokens lends its one content token to a one-word
    # headword ("debajo de" -> "debajo"); 1 turns the phrase rule off
    max_phrase_tokens: int = 3
    # a token in at least this share of a language's multiword phrases is a function word and
    # never matched through a phrase ("de", "the", "to" in eng-spa)
    function_token_share: float = 0.01
    # ... and at least this many of them: in a small dictionary 1% is a handful of phrases
    function_token_min_count: int = 3
    # phrase tokens shorter than this are never matched through a phrase (articles, "a", "y")
    min_phrase_token_len: int = 3
    # inflection, always: (suffix, replacement) turning a plural into its singular ("reyes" ->
    # "rey", "padres" -> "padre", "cities" -> "city"), applied when the result is a dictionary form
    plural_suffixes: tuple[tuple[str, str], ...] = (("s", ""), ("es", ""), ("ies", "y"))
    # inflection: a lemma that is a prefix of the word is at least this long
    min_stem: int = 3
    # inflection, shared-prefix case: the common prefix is at least this long
    min_prefix: int = 4
    # inflection: at most this many characters after the stem / common prefix on each side
    # (the word itself needs at least one: it is never a bare prefix of its lemma)
    max_tail: int = 2
    # identical folded words of at least this length match (names); 0 turns the rule off
    identical_min_len: int = 4


def iso3(code: str) -> str:
    """ISO 639-3 code for a project language code (``es -> spa``); 3-letter codes pass through."""
    c = code.strip().lower()
    if len(c) == 3 and c.isalpha():
        return c
    if c in ISO_639_3:
        return ISO_639_3[c]
    raise InputError("lexicon", "lang", f"no ISO 639-3 code known for language {code!r}",
                     "use a 3-letter ISO 639-3 code (as FreeDict names its files, e.g. 'spa') "
                     "or one of " + ", ".join(sorted(ISO_639_3)))


def fold(text: str) -> str:
    """Folded form: NFKD with combining marks dropped, casefolded, punctuation runs to one space.

    ``Día -> dia``, ``Dios -> dios``, ``l'eau -> l eau``, ``straße -> strasse``.
    """
    if not text.isascii():  # ASCII has nothing to decompose: skip the per-character pass
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def decode_b64(text: str) -> int:
    """A dictd base64 number (``'A' -> 0``, ``'BA' -> 64``); ValueError on any other character."""
    if not text:
        raise ValueError("empty number")
    value = 0
    for ch in text:
        digit = _B64.get(ch)
        if digit is None:
            raise ValueError(f"{ch!r} is not a dictd base64 digit")
        value = value * 64 + digit
    return value


def _package(stem: str) -> str:
    return "dict-" + stem  # freedict-eng-spa -> dict-freedict-eng-spa


def _format_fix(path: Path) -> str:
    return (f"reinstall it (apt-get install --reinstall {_package(path.name.split('.')[0])}) or "
            "point dict_dir at an intact dictd .index/.dict.dz pair")


def read_dictd(index_path: Path, dict_path: Path) -> Iterator[tuple[str, str]]:
    """Yield (index headword, entry text) for every non-metadata entry of a dictd dictionary.

    Raises InputError naming the file and line for an index line that is not 3 (or 4)
    tab-separated fields, a bad base64 number, an entry past the end of the data, a corrupt
    gzip stream or text that is not UTF-8.
    """
    try:
        raw = gzip.decompress(dict_path.read_bytes()) if dict_path.suffix == ".dz" \
            else dict_path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise InputError(dict_path, "data", f"not a readable gzip/dictzip file ({err})",
                         _format_fix(dict_path)) from None
    fix = _format_fix(index_path)
    try:
        lines = index_path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise InputError(index_path, "encoding", f"invalid UTF-8 at byte {err.start}",
                         fix) from None
    for lineno, line in enumerate(lines, 1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) not in (3, 4):
            raise InputError(index_path, f"line {lineno}",
                             f"expected 3 tab-separated fields (headword, offset, length), got "
                             f"{len(fields)}: {line[:80]!r}", fix)
        headword = fields[0]
        if headword.startswith(("00database", "00-database")):
            continue
        try:
            offset, length = decode_b64(fields[1]), decode_b64(fields[2])
        except ValueError as err:
            raise InputError(index_path, f"line {lineno}",
                             f"bad dictd base64 offset/length {fields[1]!r}/{fields[2]!r} ({err})",
                             fix) from None
        if offset + length > len(raw):
            raise InputError(index_path, f"line {lineno}",
                             f"entry {headword!r} ends at byte {offset + length}, past the end of "
                             f"{dict_path.name} ({len(raw)} bytes)", fix)
        try:
            text = raw[offset:offset + length].decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(dict_path, f"entry {headword!r} (index line {lineno})",
                             "invalid UTF-8", _format_fix(dict_path)) from None
        yield headword, text


def parse_entry(text: str, fallback_headword: str = "") -> tuple[str, list[str]]:
    """(folded headword phrase, folded translation phrases) of one FreeDict entry.

    The headword comes from the entry's first line without its /pronunciation/ and labels (the
    index key is lowercased and, for phrases, sometimes only the first word); the translations
    are the remaining lines minus examples, notes, synonyms and cross-references, sense numbers
    and labels, split at ``,;:``.
    """
    lines = text.split("\n")
    head = _LABELS.sub(" ", _PRON.sub(" ", lines[0], count=1)) if lines else ""
    headword = fold(head) or fold(fallback_headword)
    out: list[str] = []
    for line in lines[1:]:
        s = line.strip()
        if not s or s.startswith('"') or _SKIP_LINE.match(s):
            continue
        s = _LABELS.sub(" ", _SENSE.sub("", s))
        out.extend(p for p in (fold(x) for x in _SEPARATORS.split(s)) if p)
    return headword, out


class Lexicon:
    """Folded translation links between two languages, queried with :meth:`translates`.

    ``lang_a``/``lang_b`` are ISO 639-3 codes in the order given to :func:`load_lexicon`;
    ``sources`` are the dictionary files read.
    """

    def __init__(self, lang_a: str, lang_b: str, pairs: Iterable[tuple[str, str]],
                 sources: Iterable[Path] = (), config: LexiconConfig | None = None) -> None:
        self.lang_a, self.lang_b = lang_a, lang_b
        self.sources = tuple(sources)
        self.config = cfg = config or LexiconConfig()
        pair_set = {(a, b) for a, b in pairs if a and b}
        stop_a = self._function_tokens(a for a, _ in pair_set)
        stop_b = self._function_tokens(b for _, b in pair_set)
        self.function_tokens = (stop_a, stop_b)
        # links[0]: a-word -> b-words, links[1]: b-word -> a-word (the same relation inverted)
        self._links: tuple[dict[str, set[str]], dict[str, set[str]]] = (
            defaultdict(set), defaultdict(set))
        self._kind: dict[tuple[str, str], str] = {}  # (a, b) -> "direct" or "phrase"
        for a, b in pair_set:
            ta, tb = a.split(), b.split()
            if len(ta) == 1 and len(tb) == 1:
                self._add(ta[0], tb[0], "direct")
            # a phrase lends its one content token; with two or more ("reloj de pulsera",
            # "water colour") no single token carries the meaning and the pair is skipped
            elif len(ta) == 1 and len(tb) <= cfg.max_phrase_tokens:
                if len(content := self._content(tb, stop_b)) == 1:
                    self._add(ta[0], content[0], "phrase")
            elif len(tb) == 1 and len(ta) <= cfg.max_phrase_tokens:
                if len(content := self._content(ta, stop_a)) == 1:
                    self._add(content[0], tb[0], "phrase")
        # lemma candidates are looked up by their first min_stem characters
        self._by_stem: tuple[dict[str, list[str]], dict[str, list[str]]] = (
            defaultdict(list), defaultdict(list))
        for side in (0, 1):
            for form in self._links[side]:
                self._by_stem[side][form[:cfg.min_stem]].append(form)

    def _function_tokens(self, phrases: Iterable[str]) -> frozenset[str]:
        """Tokens in many distinct multiword phrases of one language: its function words."""
        multi = [set(p.split()) for p in set(phrases) if " " in p]
        counts = Counter(t for toks in multi for t in toks)
        floor = max(self.config.function_token_min_count,
                    self.config.function_token_share * len(multi))
        return frozenset(t for t, n in counts.items() if n >= floor)

    def _content(self, tokens: list[str], stop: frozenset[str]) -> list[str]:
        return [t for t in tokens if len(t) >= self.config.min_phrase_token_len and t not in stop]

    def _add(self, a: str, b: str, kind: str) -> None:
        self._links[0][a].add(b)
        self._links[1][b].add(a)
        if self._kind.get((a, b)) != "direct":  # a direct pair wins over the same pair via a phrase
            self._kind[a, b] = kind

    def translations(self, word: str, side: int = 0) -> frozenset[str]:
        """Folded words linked to ``word`` (side 0: word is in lang_a; 1: in lang_b), no lemmas."""
        return frozenset(self._links[side].get(fold(word), ()))

    def _inflected(self, word: str, form: str) -> bool:
        """Rule 3b: ``word`` is an inflected form of ``form`` (word has its own ending)."""
        cfg = self.config
        p = len(_common_prefix(word, form))
        tail_w, tail_f = len(word) - p, len(form) - p
        if not (1 <= tail_w <= cfg.max_tail and tail_f <= cfg.max_tail):
            return False  # a word is never a bare prefix of its lemma: came is not camel
        return (tail_f == 0 and len(form) >= cfg.min_stem) or p >= cfg.min_prefix

    def lemmas(self, word: str, side: int = 0) -> frozenset[str]:
        """Dictionary forms ``word`` is read as (rule 3 of the module docstring), maybe none.

        Itself if it has translations, plus plural-suffix stems (``padres -> padre``, even
        though ``padres`` has its own entry); a word without translations also gets the forms
        it inflects (``santos -> santo, santa``, ``habló -> hablar``).
        """
        cfg, links = self.config, self._links[side]
        w = fold(word)
        out = {w} if w in links else set()
        for suffix, repl in cfg.plural_suffixes:
            if w.endswith(suffix):
                stem = w[:len(w) - len(suffix)] + repl
                if len(stem) >= cfg.min_stem and stem in links:
                    out.add(stem)
        if w not in links:
            out.update(f for f in self._by_stem[side].get(w[:cfg.min_stem], ())
                       if self._inflected(w, f))
        return frozenset(out)

    def _link(self, forms_a: Iterable[str], forms_b: frozenset[str]) -> tuple[str, str] | None:
        for la in sorted(forms_a):
            hit = sorted(self._links[0].get(la, set()) & forms_b,
                         key=lambda b: (self._kind[la, b] != "direct", b))
            if hit:
                return la, hit[0]
        return None

    def match(self, word_a: str, word_b: str) -> str | None:
        """Why ``word_a`` (lang_a) and ``word_b`` (lang_b) match, or None if they don't.

        Tried in order: the words themselves (rules 1-2), identical (rule 4), lemmas (rule 3).
        The reason is ``"direct x=y"`` or ``"phrase x=y"`` with the linked forms (a lemma shown
        as ``word->lemma``: ``"direct years->year=anos->ano"``), or ``"identical"``.
        """
        a, b = fold(word_a), fold(word_b)
        if not a or not b:
            return None
        hit = self._link((a,), frozenset((b,)))
        n = self.config.identical_min_len
        if hit is None and n and a == b and len(a) >= n \
                and not (a in self._links[0] and b in self._links[1]):
            return "identical"
        hit = hit or self._link(self.lemmas(a, 0), self.lemmas(b, 1))
        if hit is None:
            return None
        la, lb = hit
        left = la if la == a else f"{a}->{la}"
        right = lb if lb == b else f"{b}->{lb}"
        return f"{self._kind[la, lb]} {left}={right}"

    def translates(self, word_a: str, word_b: str) -> bool:
        """Whether ``word_a`` (in lang_a) and ``word_b`` (in lang_b) are translations."""
        return self.match(word_a, word_b) is not None

    def __len__(self) -> int:
        return sum(len(v) for v in self._links[0].values())

    def __repr__(self) -> str:
        return f"Lexicon({self.lang_a}-{self.lang_b}, {len(self)} links, sources={self.sources})"


def _common_prefix(x: str, y: str) -> str:
    n = 0
    for cx, cy in zip(x, y):
        if cx != cy:
            break
        n += 1
    return x[:n]


def _dictionary_files(dict_dir: Path, src: str, tgt: str) -> tuple[Path, Path] | None:
    """(index, data) of freedict-src-tgt if its index exists; LexiconMissing if data is missing."""
    stem = f"freedict-{src}-{tgt}"
    index = dict_dir / f"{stem}.index"
    if not index.exists():
        return None
    for name in (f"{stem}.dict.dz", f"{stem}.dict"):
        if (dict_dir / name).exists():
            return index, dict_dir / name
    raise LexiconMissing(dict_dir / f"{stem}.dict.dz", "data", f"{index.name} is there but "
                         f"{stem}.dict.dz (or .dict) is not",
                         f"apt-get install --reinstall {_package(stem)}")


def load_lexicon(lang_a: str, lang_b: str, dict_dir: str | Path = DEFAULT_DICT_DIR,
                 config: LexiconConfig | None = None) -> Lexicon:
    """Read ``freedict-{a}-{b}`` and ``freedict-{b}-{a}`` (whichever exist) into one Lexicon.

    Language codes may be ISO 639-1 (``en``) or 639-3 (``eng``). Raises LexiconMissing when
    neither direction is installed, naming both files and the Debian packages to install, and
    InputError (file, line, fix) for a dictionary in the wrong format.
    """
    a, b = iso3(lang_a), iso3(lang_b)
    d = Path(dict_dir)
    pairs: list[tuple[str, str]] = []
    sources: list[Path] = []
    for src, tgt, flip in ((a, b, False), (b, a, True)):
        files = _dictionary_files(d, src, tgt)
        if files is None:
            continue
        sources.extend(files)
        for key, text in read_dictd(*files):
            head, translations = parse_entry(text, key)
            pairs.extend((t, head) if flip else (head, t) for t in translations)
    if not sources:
        raise LexiconMissing(d / f"freedict-{a}-{b}.index", "dictionary",
                             f"no FreeDict dictionary for {a}-{b} in {d} (looked for "
                             f"freedict-{a}-{b}.index and freedict-{b}-{a}.index)",
                             f"apt-get install {_package(f'freedict-{a}-{b}')} (or "
                             f"{_package(f'freedict-{b}-{a}')}), or pass dict_dir")
    return Lexicon(a, b, pairs, sources, config)
