"""Fine-tuning encoder classifiers with the final or the joint objective (paper §5)."""
