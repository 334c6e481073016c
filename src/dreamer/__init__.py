"""DreamerV3 (Hafner et al., 2023) on the shared framework: `agent=dreamer`."""
