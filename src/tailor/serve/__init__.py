"""Tailor's REST API: OpenAI's shapes for files, fine-tuning jobs, models and embeddings; Tailor's own
``/v1/classifications``; ``/health`` and ``/metrics``. ``create_app`` in :mod:`tailor.serve.app` assembles it."""
