"""Fine-tuning jobs: a queue in the database, worker processes that run them, and the executor that keeps
those workers alive."""
