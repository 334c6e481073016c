"""Which episodes of a run start where the task already pays, and whether they are training or evaluation
episodes (results/evidence/tdmpc2_dmc/README.md, pendulum-swingup).

    python results/evidence/tdmpc2_dmc/start_states.py [--task pendulum-swingup] [--seeds 1 2] [--frames 100000]
        [--experiment evidence_tdmpc2]
        [KEY=VALUE ...]   (config overrides, e.g. eval_freq=50000 eval_episodes=10: the official protocol)

The online trainer evaluates in its training env, so evaluation episodes draw their start states from the same
stream as training episodes (`eval_stream=shared`, the default), and which starts the agent learns from
depends on `eval_freq` and `eval_episodes`. This replays that stream: it builds the env as `train.py
+experiment=evidence_tdmpc2` does (`make_env`, the run's seed; `--experiment evidence_dreamer` for the
DreamerV3 study), resets it once per episode in the trainer's order (an evaluation at frame 0 and at every
multiple of `eval_freq`, training episodes in between) and takes one zero action; an episode whose
first step earns reward started inside the task's reward region. On pendulum-swingup that region is the
8 degrees around upright, about 3% of uniform starts, and before an agent has seen a reward there its reward
and value heads are 0 everywhere, so a seed whose in-region starts all fall on evaluation episodes gives its
agent nothing to learn from. The same list on every call."""
import argparse
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import common.config  # noqa: F401  (preset resolver)
from common.config import validate
from envs import make_env

CONF = Path(__file__).resolve().parents[3] / "conf"


def schedule(frames: int, eval_freq: int, eval_episodes: int, episode_frames: int) -> list[tuple[str, int]]:
    """The trainer's episode order up to `frames`: ("eval", frame) or ("train", first frame) per episode."""
    order, step, next_eval = [], 0, 0
    while step < frames:
        if step >= next_eval:
            order += [("eval", step)] * eval_episodes
            next_eval += eval_freq
        else:
            order.append(("train", step))
            step += episode_frames
    return order


def rewarded_starts(experiment: str, task: str, seed: int, frames: int,
                    overrides: list[str]) -> list[tuple[str, int]]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = validate(compose("config", overrides=[f"+experiment={experiment}", f"task={task}", f"seed={seed}",
                                                    *overrides]))
    env, spec = make_env(cfg)
    episode_frames = spec.episode_length * spec.action_repeat
    hits = []
    for kind, frame in schedule(frames, cfg.eval_freq, cfg.eval_episodes, episode_frames):
        env.reset()
        _, reward, _, _ = env.step(torch.zeros(spec.action_dim))
        if reward > 0:
            hits.append((kind, frame))
    return hits


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="pendulum-swingup")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--experiment", default="evidence_tdmpc2")
    parser.add_argument("overrides", nargs="*", help="config overrides, KEY=VALUE")
    args = parser.parse_args(argv)
    for seed in args.seeds:
        hits = rewarded_starts(args.experiment, args.task, seed, args.frames, args.overrides)
        train = [f for kind, f in hits if kind == "train"]
        evals = [f for kind, f in hits if kind == "eval"]
        print(f"{args.experiment} {args.task} seed {seed} {' '.join(args.overrides)}, first {args.frames} frames: "
              f"{len(hits)} episodes start in the reward region; training episodes starting at frames "
              f"{train or 'none'}; evaluations at {evals or 'none'}")


if __name__ == "__main__":
    main()
