"""Play hockey against a BasicOpponent (or any policy) with the keyboard.

    python -m envs.hockey.play                       # you (left, red) vs the weak BasicOpponent
    python -m envs.hockey.play --opponent strong --side right --episodes 5
    python -m envs.hockey.play --opponent-policy mypkg.policies:make_policy   # callable obs -> action,
                                                      # or a factory returning one (called without arguments)
    python -m envs.hockey.play --opponent-checkpoint pretrained/hockey/tdmpc2_hockey.pt   # a trained agent

Keys: arrows move (screen directions), w/s turn, space shoots while you hold the puck; close the window or
press Esc to quit. Needs a display and pygame (imported only when playing).
"""

from __future__ import annotations

import argparse
import importlib
import inspect

import numpy as np

from .hockey_env import HockeyEnv, Mode
from .opponents import BasicOpponent, HumanOpponent


def load_callable(path: str):
    """``"package.module:attr"`` -> the object; a class or zero-argument factory is called once."""
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"--opponent-policy must look like 'package.module:callable', got {path!r}")
    obj = getattr(importlib.import_module(module_name), attr)
    if inspect.isclass(obj):
        return obj()
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return obj
    if len(params) == 0:
        return obj()
    return obj


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--opponent", choices=["weak", "strong"], default="weak")
    p.add_argument("--opponent-policy", default=None, help="module:callable used instead of a BasicOpponent")
    p.add_argument("--opponent-checkpoint", default=None,
                   help="a checkpoint of either agent (training checkpoint or policy-only file) as the opponent")
    p.add_argument("--side", choices=["left", "right"], default="left", help="the side you play on")
    p.add_argument("--mode", choices=["normal", "shooting", "defense"], default="normal")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--seed", type=int, default=None)
    return p.parse_args(argv)


def make_opponent(args):
    """The opponent's policy from the arguments: own-perspective observation -> 4 actions, with a `reset()`
    called at each episode's start (a checkpoint's planner keeps state between steps)."""
    if args.opponent_policy and args.opponent_checkpoint:
        raise SystemExit("give --opponent-policy or --opponent-checkpoint, not both")
    if args.opponent_checkpoint:
        from .selfplay import checkpoint_policy
        policy = checkpoint_policy(args.opponent_checkpoint)
    elif args.opponent_policy:
        policy = load_callable(args.opponent_policy)
    else:
        policy = BasicOpponent(weak=args.opponent == "weak").act
    opponent = lambda obs: np.asarray(policy(obs), dtype=np.float64).reshape(-1)[:4]  # noqa: E731
    opponent.reset = getattr(policy, "reset", lambda: None)
    return opponent


def main(argv=None) -> None:
    args = parse_args(argv)
    act_opponent = make_opponent(args)
    import pygame

    mode = {"normal": Mode.NORMAL, "shooting": Mode.TRAIN_SHOOTING, "defense": Mode.TRAIN_DEFENSE}[args.mode]
    env = HockeyEnv(mode=mode, render_mode="human")
    human_player = 1 if args.side == "left" else 2
    env.reset(seed=args.seed)
    env.render()
    human = HumanOpponent(env, player=human_player)

    score = {1: 0, -1: 0, 0: 0}
    quit_requested = False
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=None if args.seed is None else args.seed + episode)
        act_opponent.reset()
        while True:
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    quit_requested = True
            if quit_requested:
                break
            obs2 = env.obs_agent_two()
            a_human = human.act(obs if human_player == 1 else obs2)
            a_bot = act_opponent(obs2 if human_player == 1 else obs)
            action = np.hstack([a_human, a_bot] if human_player == 1 else [a_bot, a_human])
            obs, _, done, _, info = env.step(action)
            env.render()
            if done:
                break
        if quit_requested:
            break
        result = info["winner"] if human_player == 1 else -info["winner"]
        score[result] += 1
        print(f"episode {episode + 1}: {'you won' if result == 1 else 'you lost' if result == -1 else 'draw'}"
              f"  (total: {score[1]} won, {score[-1]} lost, {score[0]} drawn)")
    env.close()


if __name__ == "__main__":
    main()
