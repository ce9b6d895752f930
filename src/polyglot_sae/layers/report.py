"""What the run summary says of the layer profile: a headline and one table row per hook."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


def _ci(r: dict, name: str) -> str:
    if r.get(name) is None:
        return ""
    return f"{r[name]:.3f} [{r[name + '_lo']:.3f}, {r[name + '_hi']:.3f}]"


def layer_lines(table: pl.DataFrame, langs: Sequence[str]) -> list[str]:
    """"Layer profile: concept-bilingual share highest at HOOK (...)", then the table."""
    a, b = langs[0], langs[1]
    pair = f"iou_{a}_{b}"
    best = table.row(int(table["share_concept"].arg_max()), named=True)
    lines = [f"**Layer profile over {table.height} hooks**: the concept-bilingual share is "
             f"highest at `{best['hook']}` ({best['share_concept']:.1%} of features, "
             f"{best['n_concept']} of {best['n_supported']} supported); there the features active "
             f"in a translation pair overlap {_ci(best, pair)} (IoU), against "
             f"{_ci(best, 'iou_para') or 'no paraphrase'} for a paraphrase and "
             f"{_ci(best, 'iou_random')} for random pairs. Figure: `sweeps/layers.png`.", ""]
    lens = [f"promotes_{lang}" for lang in langs if f"promotes_{lang}" in table.columns]
    head = (["hook", "FVE", "dead", "concept", *[f"{lang}-specific" for lang in langs],
             "median rho", f"IoU {a}-{b}", "IoU para", "IoU random",
             *[f"lens {c.split('_', 1)[1]}" for c in lens]])
    lines += ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for r in table.iter_rows(named=True):
        cells = [f"`{r['hook']}`", f"{r['fve']:.3f}", f"{r['share_dead']:.1%}",
                 f"{r['share_concept']:.1%}",
                 *[f"{r[f'share_lang_specific_{lang}']:.1%}" for lang in langs],
                 f"{r['median_rho']:.3f}", _ci(r, pair), _ci(r, "iou_para"),
                 _ci(r, "iou_random"), *[f"{r[c]:.1%}" for c in lens]]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]
