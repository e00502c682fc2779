"""Data stage: ingest, validate, clean, report and split labelled text."""
