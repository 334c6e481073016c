"""Evaluate a checkpoint: python evaluate.py checkpoint=PATH eval_episodes=10 [save_video=true].

On tasks with evaluation opponents (the hockey tasks: the weak and strong BasicOpponents, envs/hooks.py) it
reports win/draw/loss against each over `hockey_games` games with alternating sides, with 95% Wilson intervals.
"""
import json
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from common.checkpoint import CheckpointError
from common.config import ConfigError, validate_evaluate
from common.math import wilson_interval
from common.memory import keep_freed_memory
from common.run import device_of
from envs import hooks_class, make_env
from src.policy import load_agent
from trainer.evaluation import mean_over_tasks, per_task, return_stats, run_episode, run_episodes


def returns_summary(returns: list) -> dict:
    """Mean and standard deviation of evaluation returns (as eval.csv has them), with the returns."""
    mean, std = return_stats(returns)
    return {"mean_return": mean, "std_return": std, "returns": returns}


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
    try:
        eval_cfg = validate_evaluate(eval_cfg)
    except ConfigError as e:
        sys.exit(f"Config error: {e}")
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    keep_freed_memory()
    if eval_cfg.threads != "auto":
        torch.set_num_threads(int(eval_cfg.threads))
    try:
        overrides = {key: eval_cfg[key] for key in ("precision", "mpc") if eval_cfg[key] is not None}
        agent, cfg, spec = load_agent(eval_cfg.checkpoint, device_of(eval_cfg), overrides, task=eval_cfg.task)
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

    matchups = hooks_class(task).evaluation_matchups()  # hockey: weak and strong (envs/hooks.py)
    if matchups:
        for opponent, overrides in matchups.items():
            env = env_for(**overrides)
            with env.task_hooks.evaluating():  # what evaluation plays (hockey: full games, no drills)
                outcomes = [info.get("winner", 0) for info in run_episodes(env, agent, eval_cfg.hockey_games)[2]]
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
        results["tasks"] = per_task(spec, lambda i: returns_summary(run_episodes(env, agent, eval_cfg.eval_episodes,
                                                                                 i)[0]))
        for name, r in results["tasks"].items():
            print(f"{name}: return {r['mean_return']:.1f} +- {r['std_return']:.1f} over {len(r['returns'])} episodes")
        results["mean_return"] = mean_over_tasks(results["tasks"], "mean_return")
        print(f"mean over {len(spec.tasks)} tasks: {results['mean_return']:.1f}")
    else:
        env = env_for()
        results.update(returns_summary(run_episodes(env, agent, eval_cfg.eval_episodes)[0]))
        print(f"{task}: return {results['mean_return']:.1f} +- {results['std_return']:.1f} over "
              f"{len(results['returns'])} episodes")

    if eval_cfg.save_video:
        frames = []
        run_episode(env, agent, task=0 if spec.multitask else None, frames=frames)  # several tasks: the first one
        results["video"] = str(save_video(frames, out_dir / "episode"))
        print(f"Video: {results['video']}")
    (out_dir / "evaluation.json").write_text(json.dumps(results, indent=2, allow_nan=False))
    print(f"Results: {out_dir / 'evaluation.json'}")


if __name__ == "__main__":
    main()
