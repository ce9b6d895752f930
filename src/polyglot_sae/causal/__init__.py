"""The causal check: does the model *use* a feature, in each language?

Every bilingual score is correlational (a feature fires on the same verses in both languages).
Here each tested feature is ablated and steered:

Tested: the ``top_n`` of every method's ranking, the ``class_top_n`` of every class of the
paired method, and ``features`` from the config.

- **Ablation.** On held-out pairs (in neither the SAE's training split nor the scored split),
  in a seeded order, the first ``pairs_per_lang`` sentences per language where the feature fires
  (at a real token with a next token to predict). At every real position where it fires its
  contribution is removed at the hook, ``x' = x - f_i(x) W_dec[i]`` (the SAE's reconstruction
  error and every other feature kept: where it does not fire, nothing changes, bit for bit), the
  rest of the model runs (for ``blocks.L.hook_resid_post/pre`` only the blocks after the hook),
  and the next-token cross-entropy increase is averaged over the positions from the first firing
  to the end of the sentence (the loss at t predicts token t+1), per sentence, then over
  sentences: ``effect_{L}``, with a 95% percentile bootstrap interval over sentences
  (``effect_{L}_lo``, ``_hi``; ``bootstrap`` resamples, seeded per feature and language).
- **Controls.** ``controls`` alive features (firing in every language of the scored pairs and
  in the held-out pool), not tested, matched to the tested features' firing rates quantile by
  quantile (``select.control_features``). Their effects' 95th percentile per language,
  ``control_p95_{L}``, is the bar.
- **Verdict.** ``both``: every language above its bar and the smallest effect at least half the
  largest; ``one:{L}``: otherwise some language above its bar (L: the largest effect among
  those); ``neither``; ``untested``: the feature never fired in the held-out pool.
- **Steering.** ``alpha`` x the feature's median max activation (scored pairs) along W_dec[i],
  added at the last position of neutral contexts per language; ``steer_{C}_{W}`` is the mean
  change of log P(next token is one of the feature's words in W) over the contexts of C. The
  words (``words_{L}``): the ``words_per_lang`` most frequent tokens at its maxima among its
  ``word_pairs`` top-activating pairs in L.

Table ``results/{run}/causal/{sae}.parquet``: ``feature_id, source`` (why it is tested, e.g.
``paired:top20,seed:top20,paired:concept``; ``control``), ``is_control, verdict, firing_rate``,
per language ``effect_{L}, effect_{L}_lo, effect_{L}_hi, n_sentences_{L}, control_p95_{L},
clean_loss_{L}`` (the mean clean loss on the same positions), ``alpha, words_{L}`` and
``steer_{C}_{W}`` for every pair of languages. Modules: ``config`` (settings), ``select``
(tables only), ``engine`` (torch numerics), ``verdict``, ``run``, ``stage`` (files), ``plots``.
"""
