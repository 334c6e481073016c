"""Agents restored from checkpoints, for evaluation and as opponents, and their policy-only export:

    python -m src.policy export runs/.../checkpoints/latest.pt pretrained/hockey/agent.pt
"""
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from common import checkpoint
from common.config import ConfigError, validate_saved_agent
from common.spec import EnvSpec
from src.base import make_agent


def load_agent(path: str | Path, device: torch.device | str = "cpu", overrides: dict | None = None, task=None):
    """(agent, config, spec) rebuilt from a checkpoint file, with the weights needed to act. `overrides`: config
    keys that change how it acts, not its weights, replacing the saved values (`precision`: weights are fp32
    whatever precision wrote them, and checkpoints from before the key computed in fp32; TD-MPC2's `mpc`);
    a key the saved config lacks is a CheckpointError. `task`: the task of an official TD-MPC2 checkpoint
    (which records none); ignored for ours."""
    payload = checkpoint.load(path, map_location=device, task=task)
    saved = {"precision": "fp32", **payload["config"]}
    for key in overrides or {}:
        if key not in saved:
            raise checkpoint.CheckpointError(f"{path}: its {saved.get('agent')} agent has no `{key}` to override")
    cfg = OmegaConf.merge(saved, overrides or {})
    try:
        validate_saved_agent(cfg)
    except ConfigError as e:
        raise checkpoint.CheckpointError(f"{path}: its saved config does not hold: {e}") from None
    spec = EnvSpec(**{k: tuple(v) if k == "obs_shape" else v for k, v in payload["spec"].items()})
    agent = make_agent(cfg, spec, torch.device(device))
    if payload.get("policy_only"):  # a self-play snapshot
        agent.load_policy_state(payload["agent"])
    else:  # a training checkpoint holds the whole agent (its optimisers are rebuilt and simply unused)
        agent.load_state_dict(payload["agent"])
    return agent, cfg, spec


class CheckpointPolicy:
    """A frozen agent as a callable `obs (numpy) -> action (numpy)`, acting deterministically.

    `reset()` marks the next call as an episode's first step (the hockey task calls it at each reset)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.agent, self.cfg, self.spec = load_agent(path, device)
        self._t0 = True

    def reset(self) -> None:
        self._t0 = True

    def __call__(self, obs) -> np.ndarray:
        action = self.agent.act(torch.as_tensor(np.asarray(obs, np.float32)), t0=self._t0, eval_mode=True)
        self._t0 = False
        return action.numpy()


def export_policy(src: str | Path, out: str | Path) -> Path:
    """Write the policy-only copy of a checkpoint (what acting needs: no optimisers, no replay buffer), e.g. a
    run's latest.pt as a small file to ship or to play against."""
    payload = checkpoint.load(src)
    agent, cfg, spec = load_agent(src)
    checkpoint.save(Path(out), cfg, spec, agent, payload["trainer"], policy_only=True)
    return Path(out)


def main(argv=None) -> None:
    import argparse
    p = argparse.ArgumentParser(prog="python -m src.policy", description="Export a checkpoint's policy: "
                                "python -m src.policy export runs/.../checkpoints/latest.pt pretrained/hockey/a.pt")
    sub = p.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the policy-only copy of a checkpoint")
    export.add_argument("checkpoint")
    export.add_argument("out")
    args = p.parse_args(argv)
    try:
        out = export_policy(args.checkpoint, args.out)
    except checkpoint.CheckpointError as e:
        raise SystemExit(f"Cannot export: {e}")
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MB, policy only")


if __name__ == "__main__":
    main()
