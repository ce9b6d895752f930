"""The causal check: does the model *use* a feature, in each language?

Every bilingual score is correlational (a feature fires on the same verses in both languages).
Here each tested feature is ablated and steered:

Tested: the ``top_n`` of every method's ranking, the ``class_top_n`` of every class of the
paired method, and ``features`` from the config (``calibrate``: random alive features matched
to those on firing rate instead, to measure the verdicts' false-positive rate).

- **Ablation.** On held-out pairs (part ``pool_part`` of a seeded order of the pairs in neither
  the SAE's training split nor the scored split), ``pairs_per_lang`` sentences per language
  drawn at random among those where the feature fires (at a real token with a next token to
  predict), the verse pairs where it fires in every language first. At every real position
  where it fires its contribution is removed at the hook, ``x' = x - f_i(x) W_dec[i]`` (the
  SAE's reconstruction error and every other feature kept: where it does not fire, nothing
  changes, bit for bit), and the rest of the model runs (for ``blocks.L.hook_resid_post/pre``
  only the blocks after the hook, and on Gemma-2/3 only the window itself on the clean run's
  keys and values, ``model.lean_resume``) as far as the ``window`` positions from the first
  firing.
  Per position, KL(clean || ablated) of the next-token distribution (``shift``: over the clean
  top_k tokens, a lower bound of the exact KL) and the observed token's cross-entropy change;
  per sentence their means over the window; per feature and language the mean over sentences
  with a 95% percentile bootstrap interval (``bootstrap`` resamples, seeded per feature and
  language): ``kl_{L}``, ``effect_{L}`` (cross-entropy).
- **Controls.** ``controls`` alive features (firing in every language of the scored pairs and
  in the held-out pool), not tested, matched to the tested features on firing rate and
  activation magnitude (``select.control_features``), each on its first ``control_sentences``
  sentences per language in the pool's (seeded) order where it fires: controls share sentences
  with each other and with the whole dictionary, so their clean rows are computed once.
- **p-values and verdict** (``verdict``): log KL adjusted for log rate and log magnitude by a
  fit on the controls; a tested feature's p-value is its rank among the controls' residuals;
  Benjamini-Hochberg per language. ``both``: q < ``fdr`` in every language; ``one:{L}``: in some
  (L: the smallest q); ``neither``; ``untested``: never fired in the held-out pool.
- **Steering** (tested features only). ``alpha`` x the feature's median max activation (scored
  pairs) along W_dec[i], added at the last position of neutral contexts per language;
  ``steer_{C}_{W}`` is the mean change of log P(next token is one of the feature's words in W)
  over the contexts of C. The words (``words_{L}``): the ``words_per_lang`` most frequent tokens
  at its maxima among its ``word_pairs`` top-activating pairs in L.
- **The whole dictionary** (``dictionary``, when ``dictionary_sentences`` > 0): every alive
  feature ablated the same way on its first ``dictionary_sentences`` pool sentences per
  language, checked against the verdicts' measurement on disjoint sentences.

Table ``results/{run}/causal/{sae}.parquet``: ``feature_id, source`` (why it is tested, e.g.
``paired:top20,seed:top20,paired:concept``; ``control``), ``is_control, verdict, firing_rate,
magnitude``, per language ``effect_{L}, effect_{L}_lo, effect_{L}_hi, kl_{L}, kl_{L}_lo,
kl_{L}_hi, p_{L}, q_{L}, n_sentences_{L}, control_p95_{L}`` (the controls' 95th percentile of
KL), ``residual_{L}`` (log KL minus its fit on the controls: what the p-value ranks, and what
the summary's group test compares, a top list against the controls), ``clean_loss_{L}`` (the
mean clean loss on the same positions), ``alpha, words_{L}`` and
``steer_{C}_{W}`` for every pair of languages; ``{sae}.dictionary.parquet`` beside it. Modules:
``config`` (settings), ``select`` (tables only), ``shift`` and ``engine`` (torch numerics),
``dictionary``, ``verdict``, ``table``, ``run``, ``stage`` (files), ``plots``.
"""
