"""The seed's bilingual score (exact and seed methods), its permutation null, sweeps and monolinguality, with their figures."""
