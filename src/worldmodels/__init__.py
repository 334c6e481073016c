"""World Models (V-M-C): VQ-VAE vision, causal-transformer memory, planning controller, learned by A2C."""
