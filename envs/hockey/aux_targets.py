"""Auxiliary-task targets of one hockey episode, from the learner's stored observations and the outcome.

Computed once per episode, when it enters the replay buffer (`trainer/online_trainer.py`), and stored per
step beside the observation under `AUX_TARGET_KEYS` (src/heads/aux_task.py), each (T+1, 1) float32 for the
T+1 stored steps (step 0 is the reset observation, step t the observation after t agent steps, step T the
last one).

The observation is always the learner's own view (`envs/hockey/task.py`; player two sees the 180 degree
point mirror), so the goal the learner attacks is always at +x. Positions are relative to the table centre
(`obs[12:14]` puck position, `obs[14:16]` puck velocity in units/s; `../shared/specs/hockey_env.md` §1, §5):

* opponent goal mouth: the line x = GOAL_LINE_X = 245/60 (the inner edge of the goal sensor the puck must
  touch to score, level with the goal posts), open for |y| <= GOAL_HALF_HEIGHT = 75/60; its centre is
  GOAL_MOUTH = (GOAL_LINE_X, 0).
* `aux_goal[t]` (BCE target, 0/1): 1 if the learner scores this episode and the scoring step T is at most
  `goal_horizon` (K) agent steps after t, i.e. T - K <= t <= T. The terminal step itself (T - t = 0, the
  puck already in the goal) counts as positive, so K + 1 steps of a won episode are positive (fewer when
  the episode is shorter). Conceded goals and draws give 0 everywhere. K counts stored (agent) steps.
* `aux_puck_goal_dist[t]` (MSE target, units): Euclidean distance from the puck centre to GOAL_MOUTH,
  between 0 and about 9 (the far corners).
* `aux_shot_quality[t]` (MSE target, in [0, 1]): speed x aim. speed = min(|v| / MAX_PUCK_SPEED, 1) with
  MAX_PUCK_SPEED = 25 (the speed above which the game brakes the puck). aim: the puck's straight-line
  path is continued to the goal line, reflected at the side walls (the puck centre stays within
  |y| <= WALL_Y = 200/60 - 13/60; bank shots count, speed losses are ignored); aim = 1 when it crosses
  the line inside the mouth, falls linearly to 0 at twice the half height (|y| = 2.5), and is 0 when
  the puck does not move towards the goal (v_x <= 0).
"""
import torch

from src.heads.aux_task import AUX_TARGET_KEYS

__all__ = ["GOAL_LINE_X", "GOAL_HALF_HEIGHT", "MAX_PUCK_SPEED", "WALL_Y", "aux_targets",
           "puck_goal_distance", "shot_quality"]

GOAL_LINE_X = 245 / 60
GOAL_HALF_HEIGHT = 75 / 60
MAX_PUCK_SPEED = 25.0
PUCK_RADIUS = 13 / 60
WALL_Y = 200 / 60 - PUCK_RADIUS  # the side walls' inner faces are at relative y = +-200/60; minus the puck radius


def puck_goal_distance(obs: torch.Tensor) -> torch.Tensor:
    """Distance (..., 1) from the puck to the centre of the opponent's goal mouth; obs (..., 18)."""
    offset = obs[..., 12:14] - obs.new_tensor([GOAL_LINE_X, 0.0])
    return offset.norm(dim=-1, keepdim=True)


def _fold(y: torch.Tensor, half: float) -> torch.Tensor:
    """Reflect positions on an unbounded line back into [-half, half] (mirror images at the walls)."""
    period = 4 * half
    y = torch.remainder(y + half, period)  # in [0, 4 half): one up-and-down cycle
    return torch.where(y > 2 * half, period - y, y) - half


def shot_quality(obs: torch.Tensor) -> torch.Tensor:
    """Shot quality (..., 1) in [0, 1] of the puck's current motion; obs (..., 18). See the module docstring."""
    px, py, vx, vy = obs[..., 12], obs[..., 13], obs[..., 14], obs[..., 15]
    towards = vx > 0
    time_to_line = (GOAL_LINE_X - px).clamp(min=0) / torch.where(towards, vx, torch.ones_like(vx))
    y_cross = _fold(py + vy * time_to_line, WALL_Y)
    aim = (2 - y_cross.abs() / GOAL_HALF_HEIGHT).clamp(0, 1)
    speed = (torch.sqrt(vx * vx + vy * vy) / MAX_PUCK_SPEED).clamp(max=1)
    return torch.where(towards, speed * aim, torch.zeros_like(aim)).unsqueeze(-1)


def aux_targets(obs: torch.Tensor, final_info: dict, goal_horizon: int) -> dict[str, torch.Tensor]:
    """Per-step targets of one episode: obs (T+1, 18) as stored, `final_info` the last step's info (its
    `winner` is +1 when the learner scored), `goal_horizon` K. Returns {key: (T+1, 1) float32}."""
    obs = obs.float()
    steps = obs.shape[0]
    scored = int(final_info["winner"]) == 1
    steps_to_end = torch.arange(steps - 1, -1, -1).unsqueeze(-1)  # (T+1, 1): T - t
    goal = (steps_to_end <= goal_horizon) & scored
    # in the order of AUX_TARGET_KEYS: aux_goal, aux_puck_goal_dist, aux_shot_quality
    return dict(zip(AUX_TARGET_KEYS, (goal.float(), puck_goal_distance(obs), shot_quality(obs))))
