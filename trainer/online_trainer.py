"""Online training: random-action seeding, then act with the agent and update from replay."""
import contextlib
import time
from pathlib import Path

import torch

from common import checkpoint
from common.buffer import Buffer, episode_step
from common.config import seed_steps
from common.dataset import export_buffer
from common.run import buffer_capacity, buffer_storage, seed_generators
from trainer.base import BaseTrainer, Progress as _Progress, peak_memory_mb as _peak_memory_mb


class OnlineTrainer(BaseTrainer):
    """Runs `steps` environment steps (frames; one agent step = `action_repeat` frames).

    Evaluates every `eval_freq` and checkpoints every `checkpoint_freq` steps, both at episode
    boundaries so a checkpoint never holds half an episode; Ctrl-C checkpoints, then exits.
    """

    name = "online"
    EVAL_SEED_OFFSET = 10_000  # eval_stream=own: evaluation's stream is seeded with seed + this

    def __init__(self, cfg, env, spec, agent, buffer: Buffer, logger, run_dir: Path):
        super().__init__(cfg, env, spec, agent, buffer, logger, run_dir)
        self.seed_steps = seed_steps(cfg, spec) * spec.action_repeat  # in frames
        self.step, self.episode, self.updates = 0, 0, 0
        self._update_credit = 0.0
        self._pretrained = False
        self._next_eval, self._next_ckpt = 0, cfg.checkpoint_freq
        self._episode_start = 0
        self._eval_rng = None  # eval_stream=own: where evaluation's stream stands (None: not started)
        self.hooks = env.task_hooks  # what the task adds (envs/hooks.py), built with the env

    @staticmethod
    def make_buffer(cfg, spec, agent, run_dir: Path, device) -> Buffer:
        return Buffer(buffer_capacity(cfg, spec), agent.seq_len, agent.batch_size, buffer_storage(cfg, spec),
                      scratch_dir=str(run_dir / "buffer_memmap"), device=device,
                      cross_episodes=agent.sequences_cross_episodes)

    def finish_run(self, results_csv: Path) -> str:
        """save_dataset=true: the replay becomes an offline dataset in <run_dir>/dataset; then the curve."""
        if self.cfg.save_dataset:
            manifest = export_buffer(self.buffer, self.run_dir / "dataset", self.cfg, self.spec,
                                     source={"run_dir": str(self.run_dir.resolve()), "step": self.step})
            print(f"Dataset {self.run_dir / 'dataset'}: {manifest['num_episodes']} episodes, "
                  f"{manifest['num_steps']} steps")
        return super().finish_run(results_csv)

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"step": self.step, "episode": self.episode, "updates": self.updates,
                "update_credit": self._update_credit, "pretrained": self._pretrained,
                "next_eval": self._next_eval, "next_ckpt": self._next_ckpt, "elapsed": self._elapsed,
                "eval_rng": self._eval_rng, **self.hooks.state_dict()}

    def load_state(self, state: dict) -> None:
        self.step, self.episode, self.updates = state["step"], state["episode"], state["updates"]
        self._update_credit, self._pretrained = state["update_credit"], state["pretrained"]
        self._next_eval, self._next_ckpt = state["next_eval"], state["next_ckpt"]
        self._elapsed = state["elapsed"]
        self._eval_rng = state.get("eval_rng")  # checkpoints from before eval_stream: the stream starts afresh
        self.hooks.load_state_dict(state)
        self.load_common_state(state)

    def checkpoint_buffer(self):
        return self.buffer if self.cfg.save_buffer else None

    # ------------------------------------------------------------------ loop
    def evaluate(self) -> dict:
        with self.hooks.evaluating(), self._evaluation_stream():
            return {"episode": self.episode, **super().evaluate()}

    @contextlib.contextmanager
    def _evaluation_stream(self):
        """eval_stream=own: evaluation plays in the training env from a random stream of its own (the env's start
        states and random actions, and the global python/numpy/torch generators the agent samples from),
        continued from one evaluation to the next; training's stream is put back afterwards, so what training
        sees does not depend on eval_freq or eval_episodes. shared: evaluation continues training's stream."""
        if self.cfg.eval_stream == "shared":
            yield
            return
        training = {"env": self.env.rng_state(), "global": checkpoint.rng_state()}
        if self._eval_rng is None:
            seed = self.cfg.seed + self.EVAL_SEED_OFFSET
            self.env.set_rng_state(self.env.seeded_rng_state(seed))
            seed_generators(seed)
        else:
            self.env.set_rng_state(self._eval_rng["env"])
            checkpoint.set_rng_state(self._eval_rng["global"])
        try:
            yield
        finally:
            self._eval_rng = {"env": self.env.rng_state(), "global": checkpoint.rng_state()}
            self.env.set_rng_state(training["env"])
            checkpoint.set_rng_state(training["global"])

    def _start_training(self) -> None:
        self._episode_start = self.step  # a resumed run interrupted before its first episode keeps its step

    def _train_unit(self, start: float, progress) -> None:
        """One episode (with the updates due during it) and its train.csv row."""
        cfg = self.cfg
        self._write_diagnostics()
        self.hooks.before_episode(self.step, self.agent, {"step": self.step, "trainer": self.name},
                                  self.run_dir)
        t_episode = time.time()
        steps_before = self.step
        ret, length, info, metrics = self._collect_episode(progress)
        self.episode += 1
        self._elapsed = time.time() - start
        fps = (self.step - steps_before) / max(time.time() - t_episode, 1e-9)
        row = {"episode": self.episode, "episode_reward": ret, "episode_length": length,
               "episode_success": info.get("success", 0.0), "fps": fps,
               "elapsed_time": self._elapsed, "updates": self.updates, "peak_memory_mb": _peak_memory_mb(),
               **self.hooks.episode_stats(info), **metrics,
               **(self.agent.planner_stats() if hasattr(self.agent, "planner_stats") else {})}
        if self.episode % cfg.logger.log_freq == 0:
            self.logger.log(row, self.step, "train")
        progress.episode_return = ret

    def _resume_point(self) -> str:
        self.step = self._episode_start  # the unfinished episode never reached the buffer: count from its start
        return f"step {self.step} (the unfinished episode is dropped)"

    def _collect_episode(self, progress):
        """Play one episode (random actions while seeding), updating the agent as we go."""
        agent = self.agent
        self._episode_start = self.step
        obs = self.env.reset()
        task = self._task_kwargs()  # several tasks: {'task': id}, stored with every step
        steps = [episode_step(obs, torch.zeros(self.spec.action_dim), 0.0, False, True, **task)]
        done, ret, info, sums, count = False, 0.0, {}, {}, 0
        while not done:
            if self.step < self.seed_steps:
                action = self.env.rand_act()
            else:
                action = agent.act(obs, t0=len(steps) == 1, **task)
            obs, reward, done, info = self.env.step(action)
            steps.append(episode_step(obs, action, reward, info["terminated"], False, **task))
            ret += reward
            self.step += self.spec.action_repeat
            progress.update(self.spec.action_repeat)
            if self.step >= self.seed_steps and len(self.buffer) > 0:
                for metrics in self._updates():
                    count += 1
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + v
        episode = torch.stack(steps)
        self.hooks.annotate(episode, info)
        if self.guard.check_episode(episode, self.step):
            self.buffer.add(episode)
        self._episode_start = self.step  # nothing unfinished to drop if interrupted from here on
        return ret, len(steps) - 1, info, {k: (v / count).item() for k, v in sums.items()}

    def _updates(self):
        """Updates due at this step: when seeding ends, the updates the seed steps would have earned
        (`seed_steps * updates_per_step`; TD-MPC2's pretraining), then `updates_per_step` per agent step
        (fractions carry over)."""
        if not self._pretrained:
            self._pretrained = True
            n = max(1, int(self.seed_steps // self.spec.action_repeat * self.agent.updates_per_step))
            _Progress.write(f"Pretraining the agent on seed data: {n} updates ...")
        else:
            self._update_credit += self.agent.updates_per_step
            n = int(self._update_credit)
            self._update_credit -= n
        for _ in range(n):
            self.updates += 1
            start = time.perf_counter()
            metrics = self.guard.update(self.buffer.sample(), self.updates, self.step)
            if metrics is not None:  # None: on_nonfinite=skip dropped it
                yield {**metrics, "update_ms": torch.tensor(1e3 * (time.perf_counter() - start))}
