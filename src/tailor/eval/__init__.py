"""Evaluation stage: metrics against gold labels and a majority baseline, and the reports that show them."""
