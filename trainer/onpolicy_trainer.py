"""On-policy training: `num_envs` vector envs play `n_steps` steps each, the agent updates once on that
rollout, and the rollout is dropped (no replay)."""
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict

from envs import make_vector_env
from trainer.base import BaseTrainer, Progress, peak_memory_mb

VECTOR_SEED_OFFSET = 10_000  # the training envs' seeds: seed + offset + i, away from the evaluation env's


class OnPolicyTrainer(BaseTrainer):
    """Runs `steps` environment steps (frames, over all envs; `action_repeat` frames per agent step).

    Evaluates at step 0, every `eval_freq` steps and at the end; checkpoints every `checkpoint_freq` steps,
    at the end and on Ctrl-C, always between updates. Episodes in progress are not checkpointed: a resumed
    run starts fresh episodes (and the interrupted rollout is dropped). A train.csv row every
    `logger.log_freq` updates: the agent's metrics and the episodes finished since the last row.

    The agent needs `collect(obs, is_first) -> (action, record)`, `values(next_obs)` and `update(rollout)`
    (src/worldmodels/agent.py). Its `phase` names the trainer in checkpoints (`onpolicy`, or
    `onpolicy-vision` / `onpolicy-memory` for pretraining), so resume=true continues a phase and
    checkpoint=PATH of an earlier phase starts the next one from its weights alone."""

    name = "onpolicy"

    def __init__(self, cfg, env, spec, agent, buffer, logger, run_dir: Path):
        super().__init__(cfg, env, spec, agent, buffer, logger, run_dir)
        self.name = "onpolicy" if agent.phase == "a2c" else f"onpolicy-{agent.phase}"
        self.envs = make_vector_env(cfg, cfg.num_envs, cfg.seed + VECTOR_SEED_OFFSET)
        self.frames_per_update = cfg.n_steps * cfg.num_envs * spec.action_repeat
        self.episode, self.updates = 0, 0
        self._next_eval, self._next_ckpt = 0, cfg.checkpoint_freq
        self._recent = deque(maxlen=100)  # (return, length) of the last finished episodes, for the bar

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"step": self.step, "episode": self.episode, "updates": self.updates, "next_eval": self._next_eval,
                "next_ckpt": self._next_ckpt, "elapsed": self._elapsed}

    def load_state(self, state: dict) -> None:
        self.step, self.episode, self.updates = state["step"], state["episode"], state["updates"]
        self._next_eval, self._next_ckpt, self._elapsed = state["next_eval"], state["next_ckpt"], state["elapsed"]
        self.load_common_state(state)

    # ------------------------------------------------------------------ loop
    def _reset(self) -> None:
        n = self.cfg.num_envs
        # a resumed run must not replay the first run's episodes: the reset seeds move with the update count
        seed = self.cfg.seed + VECTOR_SEED_OFFSET + n * self.updates
        obs, _ = self.envs.reset(seed=[seed + i for i in range(n)])
        self._obs, self._is_first = self._tensor(obs), torch.ones(n, dtype=torch.bool)
        self._returns, self._lengths = np.zeros(n), np.zeros(n, dtype=np.int64)

    @staticmethod
    def _tensor(obs) -> torch.Tensor:
        return torch.from_numpy(obs if obs.dtype == np.uint8 else obs.astype(np.float32))

    def rollout(self, progress: Progress) -> tuple[TensorDict, list]:
        """(T, N) TensorDict of `n_steps` steps of every env, and the (return, length) of episodes ended in it.

        Per step: obs, the agent's record (memory history, previous action, action, value), the reward that
        step returned, terminated/done, next_obs (the final observation where an episode ended) and next_value,
        its value: the next step's recorded value, or `agent.values` of the final observation."""
        steps, finished, final_values = [], [], []
        for _ in range(self.cfg.n_steps):
            action, record = self.agent.collect(self._obs, self._is_first)
            env_action = action.argmax(-1).numpy() if self.spec.discrete else action.numpy()
            obs, reward, terminated, truncated, info = self.envs.step(env_action)
            done = terminated | truncated
            next_obs = obs.copy()
            for i in np.flatnonzero(done):  # the env has already reset: its last observation is in info
                next_obs[i] = info["final_obs"][i]
            next_obs = self._tensor(next_obs)
            # the final observations' values, now, while the agent's memory streams still hold their episodes
            final_values.append(self.agent.values(next_obs) if done.any() else record["value"])
            steps.append(TensorDict({"obs": self._obs, **record, "reward": torch.as_tensor(reward, dtype=torch.float32),
                                     "terminated": torch.as_tensor(terminated), "done": torch.as_tensor(done),
                                     "next_obs": next_obs}, batch_size=[self.cfg.num_envs]))
            self._returns += reward
            self._lengths += 1
            for i in np.flatnonzero(done):
                finished.append((float(self._returns[i]), int(self._lengths[i])))
                self._returns[i], self._lengths[i] = 0.0, 0
            self._obs, self._is_first = self._tensor(obs), torch.as_tensor(done)
            progress.update(self.cfg.num_envs * self.spec.action_repeat)
        rollout = torch.stack(steps)  # (T, N)
        # V(s_{t+1}): the next step's value (the value of the observation after the last step for t = T - 1)
        following = torch.cat([rollout["value"][1:], self.agent.values(self._obs).unsqueeze(0)])
        rollout["next_value"] = torch.where(rollout["done"], torch.stack(final_values), following)
        return rollout, finished

    def _start_training(self) -> None:
        self._reset()
        self._new_row()

    def _new_row(self) -> None:
        # since the last train.csv row: metric sums, updates, (return, length) of ended episodes, frames, seconds
        self._sums, self._count, self._ended, self._frames, self._busy = {}, 0, [], 0, 0.0

    def _train_unit(self, start: float, progress) -> None:
        """One rollout of every env and one update on it; a train.csv row every `logger.log_freq` updates."""
        cfg = self.cfg
        t_unit = time.time()
        rollout, ended = self.rollout(progress)
        t0 = time.perf_counter()
        metrics = self.guard.update(rollout, self.updates + 1, self.step)  # on_nonfinite=stop|skip|warn
        metrics = {} if metrics is None else {**metrics, "update_ms": 1e3 * (time.perf_counter() - t0)}
        self.updates += 1
        self.step += self.frames_per_update
        self.episode += len(ended)
        self._ended += ended
        self._recent.extend(ended)
        if self._recent:
            progress.episode_return = self._recent[-1][0]
        self._count += bool(metrics)  # a skipped update (on_nonfinite=skip) adds nothing to the means
        for k, v in metrics.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
        self._frames += self.frames_per_update
        self._busy += time.time() - t_unit  # frames per second of rollouts and updates: evaluations excluded
        if self.updates % cfg.logger.log_freq == 0:
            self._elapsed = time.time() - start
            row = {"episode": self.episode, "updates": self.updates, "episodes_ended": len(self._ended),
                   "fps": self._frames / max(self._busy, 1e-9), "elapsed_time": self._elapsed,
                   "peak_memory_mb": peak_memory_mb(), **{k: v / self._count for k, v in self._sums.items()}}
            if self._ended:
                row["episode_reward"] = sum(r for r, _ in self._ended) / len(self._ended)
                row["episode_length"] = sum(n for _, n in self._ended) / len(self._ended)
            self.logger.log(row, self.step, "train")
            self._new_row()

    def _resume_point(self) -> str:
        return f"step {self.step} (the unfinished rollout is dropped)"

    def _stop_training(self) -> None:
        self.envs.close()
