"""Evaluate a checkpoint: python evaluate.py checkpoint=PATH eval_episodes=10 [save_video=true].

On hockey tasks it reports win/draw/loss against the weak and strong BasicOpponents over `hockey_games`
games with alternating sides, with 95% Wilson intervals.
"""
import json
import math
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from common.checkpoint import CheckpointError
from common.config import ConfigError, validate_evaluate
from common.memory import keep_freed_memory


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run_episode(env, agent, frames: list | None = None, task: int | None = None):
    """One episode; `task` is the task id on a multi-task env (and agent)."""
    obs = env.reset() if task is None else env.reset(task=task)
    done, ret, t, info = False, 0.0, 0, {}
    kwargs = {} if task is None else {"task": task}
    while not done:
        if frames is not None:
            frames.append(env.render())
        obs, reward, done, info = env.step(agent.act(obs, t0=t == 0, eval_mode=True, **kwargs))
        ret, t = ret + reward, t + 1
    return ret, t, info


def save_video(frames: list, path: Path, fps: int = 30) -> Path:
    import imageio
    try:
        imageio.mimsave(path.with_suffix(".mp4"), frames, fps=fps)
        return path.with_suffix(".mp4")
    except Exception:  # no ffmpeg backend
        imageio.mimsave(path.with_suffix(".gif"), frames, duration=1 / fps)
        return path.with_suffix(".gif")


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(eval_cfg) -> None:
    from common.run import device_of
    from envs import HOCKEY_TASKS, make_env
    from src.policy import load_agent
    try:
        eval_cfg = validate_evaluate(eval_cfg)
    except ConfigError as e:
        sys.exit(f"Config error: {e}")
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    keep_freed_memory()
    if eval_cfg.threads != "auto":
        torch.set_num_threads(int(eval_cfg.threads))
    try:
        agent, cfg, spec = load_agent(eval_cfg.checkpoint, device_of(eval_cfg), eval_cfg.precision, task=eval_cfg.task)
    except CheckpointError as e:
        sys.exit(f"Cannot evaluate: {e}")
    task = eval_cfg.task or cfg.task
    torch.manual_seed(eval_cfg.seed)
    results = {"checkpoint": str(eval_cfg.checkpoint), "task": task if isinstance(task, str) else list(task)}

    def env_for(**overrides):
        run_cfg = OmegaConf.merge(cfg, {"task": task, **overrides})
        env, env_spec = make_env(run_cfg, seed=eval_cfg.seed)
        if (env_spec.obs_shape, env_spec.action_dim) != (spec.obs_shape, spec.action_dim):
            sys.exit(f"task={task} has observations {env_spec.obs_shape} / {env_spec.action_dim} actions; the "
                     f"checkpoint was trained on {spec.obs_shape} / {spec.action_dim}")
        if (spec.multitask or env_spec.multitask) and env_spec.tasks != spec.tasks:
            sys.exit(f"the checkpoint was trained on tasks {list(spec.tasks)}; evaluate it on those (no task=)")
        return env

    if isinstance(task, str) and task in HOCKEY_TASKS:
        for opponent in ("weak", "strong"):
            env = env_for(hockey={"opponent": opponent, "side": "alternate"})
            outcomes = [run_episode(env, agent)[2].get("winner", 0) for _ in range(eval_cfg.hockey_games)]
            n = len(outcomes)
            row = {}
            for name, value in (("win", 1), ("draw", 0), ("loss", -1)):
                k = sum(o == value for o in outcomes)
                row[name] = {"rate": k / n, "ci95": wilson_interval(k, n)}
            results[opponent] = row
            print(f"vs {opponent:6s} over {n} games: " + ", ".join(
                f"{name} {v['rate']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]" for name, v in row.items()))
    elif spec.multitask:  # eval_episodes per task, and the mean over tasks
        env = env_for()
        results["tasks"] = {}
        for i, name in enumerate(spec.tasks):
            returns = [run_episode(env, agent, task=i)[0] for _ in range(eval_cfg.eval_episodes)]
            results["tasks"][name] = {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
                                      "returns": returns}
            print(f"{name}: return {np.mean(returns):.1f} +- {np.std(returns):.1f} over {len(returns)} episodes")
        results["mean_return"] = float(np.mean([r["mean_return"] for r in results["tasks"].values()]))
        print(f"mean over {len(spec.tasks)} tasks: {results['mean_return']:.1f}")
    else:
        env = env_for()
        returns = [run_episode(env, agent)[0] for _ in range(eval_cfg.eval_episodes)]
        results.update(mean_return=float(np.mean(returns)), std_return=float(np.std(returns)), returns=returns)
        print(f"{task}: return {np.mean(returns):.1f} +- {np.std(returns):.1f} over {len(returns)} episodes")

    if eval_cfg.save_video:
        frames = []
        run_episode(env, agent, frames, task=0 if spec.multitask else None)  # several tasks: the first one
        results["video"] = str(save_video(frames, out_dir / "episode"))
        print(f"Video: {results['video']}")
    (out_dir / "evaluation.json").write_text(json.dumps(results, indent=2, allow_nan=False))
    print(f"Results: {out_dir / 'evaluation.json'}")


if __name__ == "__main__":
    main()
