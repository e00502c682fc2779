"""Fine-tuning: typed config, batching, explicit training loops, method choice, search, checkpoints, jobs."""
