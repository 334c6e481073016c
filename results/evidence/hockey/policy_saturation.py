"""How noisy and how saturated a TD-MPC2 hockey agent's policy prior is (results/evidence/hockey/README.md).

    python results/evidence/hockey/policy_saturation.py CHECKPOINT [CHECKPOINT ...]

Plays 1000 steps of the deterministic policy (the prior's mean action) against the weak BasicOpponent in the
framework's hockey task (`make_hockey_env`, seeded: sides alternate as in training) and prints, per action dim, the mean pre-tanh std of the prior and the share of steps whose
mean action is beyond |0.99|. With `mpc=false` the prior's samples are the agent's exploration."""
import sys

import numpy as np
import torch

from envs.hockey.task import make_hockey_env
from src.policy import load_agent

STEPS = 1000


def saturation(path: str) -> tuple[str, np.ndarray, np.ndarray]:
    agent, cfg, _ = load_agent(path)
    env = make_hockey_env(opponent="weak", seed=0)
    obs, _ = env.reset()
    log_stds, means = [], []
    for _ in range(STEPS):
        with torch.no_grad():
            z = agent.model.encode(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
            _, info = agent.model.pi(z)
        log_stds.append(info["log_std"].numpy()), means.append(info["mean"].numpy())
        obs, _, terminated, truncated, _ = env.step(info["mean"].numpy()[0])
        if terminated or truncated:
            obs, _ = env.reset()
    return cfg.entropy, np.exp(np.concatenate(log_stds)).mean(0), (np.abs(np.concatenate(means)) > 0.99).mean(0)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        entropy, std, saturated = saturation(path)
        print(f"{path} (entropy={entropy}): pre-tanh std per dim {np.round(std, 3)}, "
              f"share of |mean action| > 0.99 per dim {np.round(saturated, 3)}")
