"""Task definitions: YAML files in lm-eval-harness vocabulary, and their data loaders."""
