"""Building blocks shared by every agent: math, layers, replay buffer, config, logging, checkpoints."""
