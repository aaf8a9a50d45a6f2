"""Cost model of early exit (issue 22): measured cost profiles, FLOPs/bytes, predicted speed-up and the
oracle ceiling. Everything here except :mod:`ee_bench.costs.measure` is torch-free, so the leaderboard,
``rescore`` and the run share one computation (:func:`ee_bench.costs.predict.predicted_speedup`)."""
