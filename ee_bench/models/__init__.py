"""Model wrappers that expose intermediate-layer decoding, and the model-card registry."""
