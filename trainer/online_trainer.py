"""Online training: random-action seeding, then act with the agent and update from replay."""
import contextlib
import time
from collections import deque
from pathlib import Path

import torch

from common import checkpoint
from common.buffer import Buffer, episode_step
from common.config import seed_steps
from envs import aux_targets_fn, opponent_pool
from trainer.base import BaseTrainer, Progress as _Progress, peak_memory_mb as _peak_memory_mb


class OnlineTrainer(BaseTrainer):
    """Runs `steps` environment steps (frames; one agent step = `action_repeat` frames).

    Evaluates every `eval_freq` and checkpoints every `checkpoint_freq` steps, both at episode
    boundaries so a checkpoint never holds half an episode; Ctrl-C checkpoints, then exits.
    """

    name = "online"

    def __init__(self, cfg, env, spec, agent, buffer: Buffer, logger, run_dir: Path):
        super().__init__(cfg, env, spec, agent, buffer, logger, run_dir)
        self.seed_steps = seed_steps(cfg, spec) * spec.action_repeat  # in frames
        self.step, self.episode, self.updates = 0, 0, 0
        self._update_credit = 0.0
        self._pretrained = False
        self._next_eval, self._next_ckpt = 0, cfg.checkpoint_freq
        self._episode_start = 0
        self._outcomes = deque(maxlen=100)  # per-episode results of two-player games (win/draw/loss)
        # aux_heads: the task's per-step auxiliary targets, computed once per episode as it enters the buffer
        self._aux_targets = aux_targets_fn(cfg.task) if cfg.aux_heads.enabled else None
        # hockey.opponent=selfplay: the env's opponent pool, which the learner's snapshots join
        self.pool = opponent_pool(env)
        self._next_snapshot = 0

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"step": self.step, "episode": self.episode, "updates": self.updates,
                "update_credit": self._update_credit, "pretrained": self._pretrained,
                "next_eval": self._next_eval, "next_ckpt": self._next_ckpt,
                "outcomes": list(self._outcomes), "elapsed": self._elapsed, "next_snapshot": self._next_snapshot,
                "selfplay": self.pool.state_dict() if self.pool is not None else None}

    def load_state(self, state: dict) -> None:
        self.step, self.episode, self.updates = state["step"], state["episode"], state["updates"]
        self._update_credit, self._pretrained = state["update_credit"], state["pretrained"]
        self._next_eval, self._next_ckpt = state["next_eval"], state["next_ckpt"]
        self._outcomes.extend(state["outcomes"])
        self._elapsed = state["elapsed"]
        self._next_snapshot = state.get("next_snapshot", self.step)  # older checkpoints: snapshot now
        if self.pool is not None and state.get("selfplay"):
            self.pool.load_state_dict(state["selfplay"])
        if self.spec.multitask:  # the round-robin task rotation: training episode k plays task k mod num_tasks
            self.env.next_task = self.episode % len(self.spec.tasks)
        self.load_common_state(state)

    def checkpoint_buffer(self):
        return self.buffer if self.cfg.save_buffer else None

    # ------------------------------------------------------------------ loop
    def evaluate(self) -> dict:
        # self-play evaluates against the task's own BasicOpponent, as runs without a pool do
        with self.pool.evaluating() if self.pool is not None else contextlib.nullcontext():
            return {"episode": self.episode, **super().evaluate()}

    def train(self) -> None:
        cfg = self.cfg
        progress = _Progress(cfg.steps, self.step, enabled=cfg.logger.progress)
        last_eval = None
        start = time.time() - self._elapsed
        try:
            while self.step < cfg.steps:
                if self.step >= self._next_eval:
                    last_eval = self._log_eval(start)
                    progress.eval_return = last_eval["episode_reward"]
                    self._next_eval += cfg.eval_freq
                self._multi_gamma_snapshot()
                self._selfplay_snapshot()
                t_episode = time.time()
                steps_before = self.step
                ret, length, info, metrics = self._collect_episode(progress)
                self.episode += 1
                self._elapsed = time.time() - start
                fps = (self.step - steps_before) / max(time.time() - t_episode, 1e-9)
                row = {"episode": self.episode, "episode_reward": ret, "episode_length": length,
                       "episode_success": info.get("success", 0.0), "fps": fps,
                       "elapsed_time": self._elapsed, "updates": self.updates, "peak_memory_mb": _peak_memory_mb(),
                       **self._game_stats(info), **metrics,
                       **(self.agent.planner_stats() if hasattr(self.agent, "planner_stats") else {})}
                if self.episode % cfg.logger.log_freq == 0:
                    self.logger.log(row, self.step, "train")
                progress.episode_return = ret
                if self.step >= self._next_ckpt:
                    self.save_checkpoint()
                    self._next_ckpt += cfg.checkpoint_freq
            self._finish(start)
        except KeyboardInterrupt:
            progress.close()
            # the unfinished episode never reached the buffer: count from its start again
            self.step = self._episode_start
            self._checkpoint_on_interrupt(start, f"step {self.step} (the unfinished episode is dropped)")
            raise
        finally:
            progress.close()

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
        if self._aux_targets is not None:
            episode.update(self._aux_targets(episode["obs"], info, self.cfg.aux_heads.goal_horizon))
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

    def _game_stats(self, info: dict) -> dict:
        """Win/draw/loss rates over the last 100 games for two-player tasks (info carries `winner`)."""
        if "winner" not in info:
            return {}
        self._outcomes.append(int(info["winner"]))
        n = len(self._outcomes)
        stats = {"win_rate": sum(o == 1 for o in self._outcomes) / n,
                 "draw_rate": sum(o == 0 for o in self._outcomes) / n,
                 "loss_rate": sum(o == -1 for o in self._outcomes) / n}
        for key in ("goals_for", "goals_against"):
            if key in info:
                stats[key] = info[key]
        if self.pool is not None:  # the game's opponent: per-opponent win rates, PFSP scores
            self.pool.record(int(info["winner"]))
            stats.update(self.pool.stats())
        return stats

    def _selfplay_snapshot(self) -> None:
        """Self-play: every `selfplay.snapshot_every` steps (the first at step 0, so the pool is never empty)
        the learner's policy goes to `selfplay/step_<N>.pt` and joins the opponent pool."""
        if self.pool is None or self.cfg.selfplay.snapshot_every == 0 or self.step < self._next_snapshot:
            return
        every = self.cfg.selfplay.snapshot_every
        path = self.run_dir / "selfplay" / f"step_{self.step}.pt"
        checkpoint.save(path, self.cfg, self.spec, self.agent, {"step": self.step, "trainer": self.name},
                        policy_only=True)
        dropped = self.pool.add(path, self.step)
        self._next_snapshot = (self.step // every + 1) * every  # snapshots come at episode ends: next multiple
        _Progress.write(f"Self-play snapshot {path.name}: pool of {len(self.pool.members)}"
                        + "".join(f", dropped {Path(m.path).name}" for m in dropped))
