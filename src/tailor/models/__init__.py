"""Model artifacts: build, save, load and export fine-tuned classifiers."""
