"""Exit analysis: the oracle, gates, gate-vs-oracle scoring and KV-cache strategies."""
