"""Command line: the same library functions the Snakemake scripts call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import InputError


def _score_paired(args: argparse.Namespace) -> None:
    from .paired.classes import ClassConfig
    from .paired.stage import classify_file, paired_stats_file
    from .paired.stats import PairedConfig

    if args.permutations:
        raise SystemExit("error: --method paired has no permutation null: its rank follows "
                         "rho's bootstrap lower bound (--bootstrap)")
    if bool(args.paraphrase) != bool(args.paraphrase_of):
        raise SystemExit("error: --paraphrase and --paraphrase-of go together")
    langs = args.langs.split(",")
    paraphrase = ((args.paraphrase_of, args.paraphrase, args.paraphrase_lengths)
                  if args.paraphrase else None)
    # Statistics then classes, as the pipeline's two rules do, into the one output file.
    paired_stats_file(args.maxacts, args.out, langs=langs, d_sae=args.d_sae,
                      config=PairedConfig(bootstrap=args.bootstrap, seed=args.seed),
                      lengths_path=args.lengths, vocab_path=args.vocab, paraphrase=paraphrase)
    scores = classify_file(args.out, args.out, langs=langs, classes=ClassConfig())
    counts = dict(scores.group_by("class").len().iter_rows())
    print(f"scored {scores.height} features ({scores['rank'].count()} ranked) with method "
          f"paired -> {args.out}; concept {counts.get('concept', 0)}, shared_string "
          f"{counts.get('shared_string', 0)}, low_support {counts.get('low_support', 0)}")


def _score(args: argparse.Namespace) -> None:
    if args.method == "paired":
        return _score_paired(args)
    from polyglot_sae.score.null import NullConfig
    from polyglot_sae.score.bilingual import ScoreConfig
    from polyglot_sae.score.files import score_file

    if args.permutations < 0:
        raise SystemExit(f"error: --permutations must be >= 0, got {args.permutations}")
    null = NullConfig(permutations=args.permutations, seed=args.seed) if args.permutations else None
    scores = score_file(args.maxacts, args.out, langs=args.langs.split(","), d_sae=args.d_sae,
                        config=ScoreConfig(method=args.method, beta_rank=args.beta_rank),
                        null=null)
    alive = scores["rank"].count()
    print(f"scored {scores.height} features ({alive} alive) with method {args.method} -> {args.out}")
    if args.permutations > 0:
        found = scores.filter(scores["q_value"] < 0.05).height
        print(f"{found} features bilingual at q < 0.05 ({args.permutations} permutations, "
              f"seed {args.seed})")


def _import_seed(args: argparse.Namespace) -> None:
    from polyglot_sae.corpus.seed_dataset import SEED_DATASET, write_seed_maxacts

    table, meta = write_seed_maxacts(args.out, args.source or SEED_DATASET, split=args.split,
                                     local_path=args.local_path, keep_padding=args.keep_padding)
    print(f"{table.height} rows over {meta['n_pairs']} pairs, d_sae {meta['d_sae']} -> {args.out}; "
          f"score it with: polyglot-sae score {args.out} --d-sae {meta['d_sae']} --langs es,en "
          "--method seed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyglot-sae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="bilingual interpretability score of every SAE feature")
    score.add_argument("maxacts", help="max-activation table (pair_id, lang, feature_id, value)")
    score.add_argument("--d-sae", type=int, required=True, help="number of SAE features")
    score.add_argument("--langs", required=True, help="comma-separated language codes, e.g. en,es")
    score.add_argument("--method", choices=["seed", "exact", "paired"], default="exact",
                       help="seed: the blog's published code; exact: the blog text's definition; "
                            "paired: correlation of the per-pair maxima, ranked by its bound")
    score.add_argument("--lengths", help="paired: the reducer's lengths table (rho given length)")
    score.add_argument("--vocab", help="paired: the reducer's vocab table (shared-string control)")
    score.add_argument("--paraphrase", help="paired: max table of a paraphrase language")
    score.add_argument("--paraphrase-of", help="paired: the language it paraphrases, e.g. en")
    score.add_argument("--paraphrase-lengths", help="paired: the paraphrase's lengths table")
    score.add_argument("--bootstrap", type=int, default=200,
                       help="paired: bootstrap replicates behind rho's lower bound")
    score.add_argument("--beta-rank", type=int, default=300,
                       help="beta lets idaf reorder features only up to this 0-based JSD rank")
    score.add_argument("--permutations", type=int, default=0,
                       help="permutation null: re-pairings of the languages (0: none); adds "
                            "p_value and q_value (Benjamini-Hochberg) columns")
    score.add_argument("--seed", type=int, default=0,
                       help="seed of the permutations (paired: of the bootstrap)")
    score.add_argument("--out", required=True, help="scores.parquet to write")
    score.set_defaults(func=_score)
    seed = sub.add_parser("import-seed-dataset",
                          help="the seed blog's published activations -> a max-activation table")
    seed.add_argument("--out", required=True, help="max-activation parquet to write")
    seed.add_argument("--source", help="hub dataset (default diegomezp/gemmascope_bilingual_activations)")
    seed.add_argument("--local-path", help="a copy saved with datasets' save_to_disk, instead of the hub")
    seed.add_argument("--split", default="train", help="dataset split")
    seed.add_argument("--keep-padding", action="store_true",
                      help="take the max over padded positions too, as the published code did")
    seed.set_defaults(func=_import_seed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
