"""What a cartpole-swingup TD-MPC2 checkpoint does and believes, for the A0 seed-1 collapse at 28k frames:

    python results/evidence/tdmpc2_dmc/probe_cartpole.py CHECKPOINT [CHECKPOINT ...] [--episode pi|mpc]

For each checkpoint: the policy prior's mean and log-std, the reward head's and the Q ensemble's value at four
hand-made states (cartpole observations are cart x, cos and sin of the pole angle, cart and pole velocity);
with --episode, one evaluation episode (seed 7) acting with the policy prior (pi) or the planner (mpc): its
return, the actions' mean and size, and where the cart and the pole are along the way.
"""
import argparse

import numpy as np
import torch
from omegaconf import OmegaConf

from envs import make_env
from src.policy import load_agent

STATES = {"down, centre, still": [0, -1, 0, 0, 0], "down, x=-0.9": [-0.9, -1, 0, 0, 0],
          "up, centre, still": [0, 1, 0, 0, 0], "horizontal": [0, 0, 1, 0, 0]}


@torch.no_grad()
def beliefs(agent) -> None:
    m = agent.model
    for name, state in STATES.items():
        z = m.encode(torch.tensor([state], dtype=torch.float32))
        _, info = m.pi(z)
        reward = m.two_hot.decode(m.reward(z, info["mean"])).item()
        value = m.Q(z, info["mean"], return_type="avg").item()
        print(f"  {name:20s} pi mean {info['mean'].item():+.3f} log_std {info['log_std'].item():+.2f}  "
              f"predicted reward {reward:.3f}  Q {value:.1f}")


def episode(agent, cfg, seed: int = 7) -> None:
    env, _ = make_env(OmegaConf.merge(cfg, {"seed": seed}), seed=seed)
    obs, done, t, ret, rows = env.reset(), False, 0, 0.0, []
    while not done:
        action = agent.act(obs, t0=t == 0, eval_mode=True)
        rows.append((float(action[0]), float(obs[0]), float(obs[1])))
        obs, reward, done, _ = env.step(action)
        ret, t = ret + reward, t + 1
    actions, xs, cos = (np.array(c) for c in zip(*rows))
    at = [0, 50, 100, 200, len(xs) - 1]
    print(f"  episode: return {ret:.2f}, action mean {actions.mean():+.3f}, mean |action| {np.abs(actions).mean():.3f}")
    print(f"  cart x at steps {at}: {xs[at].round(3).tolist()}; pole cos: {cos[at].round(3).tolist()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--episode", choices=["pi", "mpc"], default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    for path in args.checkpoints:
        overrides = {"mpc": args.episode == "mpc"} if args.episode else {}
        agent, cfg, _ = load_agent(path, "cpu", overrides)
        print(path)
        beliefs(agent)
        if args.episode:
            episode(agent, cfg)


if __name__ == "__main__":
    main()
