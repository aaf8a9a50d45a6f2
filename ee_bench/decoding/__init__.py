"""Real token-level early-exit decoding: block-by-block execution, KV strategies, timing, calibration."""
