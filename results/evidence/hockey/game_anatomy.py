"""Where a hockey agent's games are won, drawn and lost (results/evidence/hockey/README.md).

    python results/evidence/hockey/game_anatomy.py CHECKPOINT [--games 100]

Plays `--games` games of the checkpoint's deterministic policy against each BasicOpponent in the framework's
seeded hockey task (`make_hockey_env`, sides alternating as in training; the same figures on every call) and
prints, per outcome: the games, their mean length, the share of steps with the puck in the opponent's half
and within 2 units of the opponent's goal line, the learner's catches, and its shots on target (steps where
the puck starts moving towards the opponent's goal mouth at over 5 units/s, its straight line crossing the
goal line inside the mouth; bounces off the side walls are not followed)."""
import argparse

import numpy as np
import torch

from envs.hockey.task import make_hockey_env
from src.policy import CheckpointPolicy

GOAL_LINE_X = 4.25  # the opponent's goal line in the learner's frame (observation x is relative to the centre)
GOAL_HALF_HEIGHT = 1.25
SHOT_SPEED = 5.0


def on_target(obs: np.ndarray) -> bool:
    """The puck (obs[12:14], velocity obs[14:16]) heads for the opponent's goal mouth in a straight line."""
    (x, y), (vx, vy) = obs[12:14], obs[14:16]
    if vx <= 0 or np.hypot(vx, vy) < SHOT_SPEED:
        return False
    return abs(y + vy * (GOAL_LINE_X - x) / vx) < GOAL_HALF_HEIGHT


def play(policy: CheckpointPolicy, opponent: str, games: int) -> np.ndarray:
    """One row per game: winner, length, share in the opponent's half, share near its goal, catches, shots."""
    env = make_hockey_env(opponent=opponent, seed=0)
    rows = []
    for _ in range(games):
        obs, _ = env.reset()
        policy.reset()
        done, length, half, near, catches, shots, was_on_target = False, 0, 0, 0, 0, 0, False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy(obs))
            done, length = terminated or truncated, length + 1
            half += obs[12] > 0
            near += obs[12] > GOAL_LINE_X - 2
            catches += info["reward_touch_puck"] > 0
            now_on_target = on_target(obs)
            shots += now_on_target and not was_on_target
            was_on_target = now_on_target
        rows.append((info["winner"], length, half / length, near / length, catches, shots))
    return np.array(rows, dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--games", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = CheckpointPolicy(args.checkpoint)
    print(f"{args.checkpoint}: {args.games} games against each opponent, deterministic policy")
    print("opponent outcome  games  length  in opp. half  near opp. goal  catches  shots on target")
    for opponent in ("weak", "strong"):
        rows = play(policy, opponent, args.games)
        for winner, name in ((1, "win"), (0, "draw"), (-1, "loss")):
            mine = rows[rows[:, 0] == winner]
            if len(mine):
                length, half, near, catches, shots = mine[:, 1:].mean(0)
                print(f"{opponent:8s} {name:7s} {len(mine):6d} {length:7.0f} {half:13.2f} {near:15.2f} "
                      f"{catches:8.1f} {shots:16.1f}")


if __name__ == "__main__":
    main()
