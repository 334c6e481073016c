"""What every trainer shares: evaluation in the real environment, checkpoints of the trainer's state,
the non-finite guard around updates, multi-discount debug snapshots, the progress bar and the peak-memory
reading."""
import json
import resource
import time
from pathlib import Path

import torch

from common import checkpoint
from common.logger import write_reference_csv
from trainer.evaluation import mean_over_tasks, per_task, return_stats, run_episodes


class BaseTrainer:
    """A trainer owns the loop; subclasses define `train()`, `state()` and `load_state()`.

    `name` is stored in every checkpoint (the trainer state's `trainer` key), so train.py can tell a
    checkpoint of another trainer (fine-tuning: load the agent only) from one to resume.
    """
    name = "base"

    def __init__(self, cfg, env, spec, agent, buffer, logger, run_dir: Path):
        self.cfg, self.env, self.spec, self.agent, self.buffer, self.logger = cfg, env, spec, agent, buffer, logger
        self.run_dir = Path(run_dir)
        self.ckpt_path = self.run_dir / "checkpoints" / "latest.pt"
        self.step = 0
        self._elapsed = 0.0
        self.finished = False  # the final evaluation and checkpoint are done: resuming has nothing to do
        self.guard = NonFiniteGuard(agent, cfg.on_nonfinite, self.run_dir)

    @staticmethod
    def make_buffer(cfg, spec, agent, run_dir: Path, device):
        """The replay the trainer learns from, built before the trainer (resuming fills it); None: no replay."""
        return None

    def finish_run(self, results_csv: Path) -> str:
        """After training: write the evaluation curve in the reference format (`step,reward,seed`, steps in
        frames) to `results_csv`; returns the closing message."""
        write_reference_csv(self.logger.csv("eval").rows(), results_csv, self.cfg.seed)
        return f"Done: {self.step} steps. Run directory {self.run_dir}; eval curve {results_csv}"

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        raise NotImplementedError

    def load_state(self, state: dict) -> None:
        raise NotImplementedError

    def checkpoint_buffer(self):
        """The buffer to save beside a checkpoint, or None."""
        return None

    def save_checkpoint(self) -> None:
        """The trainer's state plus what resuming must continue exactly: the metrics rows written so far
        (a resumed run drops any row written after this), the env's RNG state, and whether the run is done."""
        state = {**self.state(), "trainer": self.name, "finished": self.finished,
                 "metrics_rows": self.logger.row_counts(), "env": self.env.rng_state()}
        checkpoint.save(self.ckpt_path, self.cfg, self.spec, self.agent, state, self.checkpoint_buffer())

    def load_common_state(self, state: dict) -> None:
        """What `save_checkpoint` adds to every trainer's state. Loaded files always have it (older ones get it
        from common/checkpoint.py's migration); a state straight from `state()`, never saved, has not."""
        self.finished = state.get("finished", False) and self.step >= self.cfg.steps
        if state.get("env") is not None:
            self.env.set_rng_state(state["env"])

    # ------------------------------------------------------------------ the schedule every trainer runs
    progress_unit = "step"  # what `steps` counts, for the progress bar's rate

    def train(self) -> None:
        """Until `steps`: an evaluation when due, one unit of training (`_train_unit`: an episode, an update, a
        rollout), a checkpoint when due; then the final evaluation and checkpoint. Ctrl-C (and SIGTERM) saves a
        checkpoint at `_resume_point()` and re-raises."""
        progress = Progress(self.cfg.steps, self.step, enabled=self.cfg.logger.progress, unit=self.progress_unit)
        start = time.time() - self._elapsed  # a resumed run's wall time continues from its checkpoint's
        self._start_training()
        try:
            while self.step < self.cfg.steps:
                self._evaluate_if_due(start, progress)
                self._train_unit(start, progress)
                self._checkpoint_if_due(start)
            self._finish(start, progress)
        except KeyboardInterrupt:
            progress.close()
            self._checkpoint_on_interrupt(start, self._resume_point())
            raise
        finally:
            progress.close()
            self._stop_training()

    def _start_training(self) -> None:
        """Before the first unit, of a new or a resumed run."""

    def _train_unit(self, start: float, progress) -> None:
        """One unit of training, advancing `step`; `start` is the run's (resumed) start time."""
        raise NotImplementedError

    def _resume_point(self) -> str:
        """The interrupt checkpoint's step, as its message names it (a trainer may move `step` back to the start of
        the unit the interrupt cut short)."""
        return f"step {self.step}"

    def _stop_training(self) -> None:
        """After the loop, however it ended."""

    def _evaluate_if_due(self, start: float, progress) -> bool:
        """An evaluation (eval.csv row) when the step has reached the next multiple of `eval_freq` since 0."""
        if self.step < self._next_eval:
            return False
        progress.eval_return = self._log_eval(start)["episode_reward"]
        self._next_eval += self.cfg.eval_freq
        return True

    def _checkpoint_if_due(self, start: float) -> None:
        """A checkpoint when the step has reached the next multiple of `checkpoint_freq`; `start` is the run's
        (resumed) start time, for the wall time it records."""
        if self.step >= self._next_ckpt:
            self._elapsed = time.time() - start
            self.save_checkpoint()
            self._next_ckpt += self.cfg.checkpoint_freq

    def _finish(self, start: float, progress=None) -> dict | None:
        """The final evaluation and checkpoint, once: a finished run resumed with the same `steps` does nothing."""
        if self.finished:
            Progress.write(f"The run already finished at step {self.step}: nothing to do (give a larger steps= "
                           "to extend it)")
            return None
        row = self._log_eval(start)
        if progress is not None:
            progress.eval_return = row["episode_reward"]
        while self._next_eval <= self.step:  # extending the run later must not evaluate this step again
            self._next_eval += self.cfg.eval_freq
        self.finished = True
        self.save_checkpoint()
        return row

    # ------------------------------------------------------------------ evaluation
    def _checkpoint_on_interrupt(self, start: float, what: str) -> None:
        """Ctrl-C: save a checkpoint at `self.step` (`what` says what that step is), then tell how to resume."""
        print(f"\nInterrupted: saving a checkpoint at {what} ...", flush=True)
        self._elapsed = time.time() - start
        self.save_checkpoint()
        print(f"Saved {self.ckpt_path}. Continue with the same command plus resume=true.")

    def evaluate(self) -> dict:
        """`eval_episodes` episodes. With several tasks, `eval_episodes` per task: `episode_reward/<task>` and
        `episode_reward_std/<task>` per task, and `episode_reward`, `episode_success`, `episode_length` as the
        mean over tasks (each task counts once, whatever its episode length)."""
        if not self.spec.multitask:
            return self._evaluate_episodes()
        tasks = per_task(self.spec, self._evaluate_episodes)
        row = {key: mean_over_tasks(tasks, key) for key in ("episode_reward", "episode_success", "episode_length")}
        for name, r in tasks.items():
            row[f"episode_reward/{name}"], row[f"episode_reward_std/{name}"] = r["episode_reward"], \
                r["episode_reward_std"]
        return row

    def _evaluate_episodes(self, task: int | None = None) -> dict:
        returns, lengths, infos = run_episodes(self.env, self.agent, self.cfg.eval_episodes, task)
        successes = [info.get("success", 0.0) for info in infos]
        mean, std = return_stats(returns)
        return {"episode_reward": mean, "episode_reward_std": std, "episode_success": sum(successes) / len(successes),
                "episode_length": sum(lengths) / len(lengths)}

    def _task_kwargs(self) -> dict:
        """With several tasks, {'task': the env's current task id} for agent.act and the buffer; else {}."""
        return {"task": self.env.task_id} if self.spec.multitask else {}

    def _log_eval(self, start: float) -> dict:
        """Evaluate and write an eval.csv row at the current step; `start` is the run's (resumed) start time."""
        row = self.evaluate()
        self._elapsed = time.time() - start
        self.logger.log({**row, "elapsed_time": self._elapsed}, self.step, "eval")
        return row

    def _write_diagnostics(self) -> None:
        """Agents with diagnostics (an optional `diagnostics(step, sample)` method; TD-MPC2's multi-discount
        snapshots) decide when they are due and return {name: JSON records}; each name's records are appended
        to <run_dir>/<name>.jsonl. `sample()` draws a replay batch only if the agent asks for one."""
        if not hasattr(self.agent, "diagnostics") or len(self.buffer) == 0:
            return
        for name, records in self.agent.diagnostics(self.step, self.buffer.sample).items():
            with open(self.run_dir / f"{name}.jsonl", "a") as f:
                for record in records:
                    f.write(json.dumps(record) + "\n")


class NonFiniteError(RuntimeError):
    """on_nonfinite=stop: training stopped at a non-finite loss, gradient or observation."""


class NonFiniteGuard:
    """`on_nonfinite=stop|skip|warn` around `agent.update(batch)`, for any agent.

    A step pre-hook on each of the agent's optimisers checks its gradients (after clipping) just before the
    step: non-finite ones are dropped (`p.grad = None`, which Adam skips), so with stop or skip the weights
    stay finite; warn lets the step through. After the update the returned metrics (losses, gradient norms)
    are checked too. stop raises NonFiniteError naming the metrics, the optimisers, the update and step and
    the last finite values, after writing `diagnostic.pt` (the batch, the metrics, the agent's weights);
    skip drops that update's metrics and carries on; warn prints and carries on.
    The checks cost one device synchronisation per optimiser step and one per update."""

    def __init__(self, agent, mode: str, run_dir: Path):
        self.agent, self.mode, self.run_dir = agent, mode, Path(run_dir)
        self.last_finite, self.count, self._bad_grads = {}, 0, []
        for name, value in vars(agent).items():
            if isinstance(value, torch.optim.Optimizer):
                value.register_step_pre_hook(lambda opt, args, kwargs, name=name: self._check_grads(name, opt))

    def _check_grads(self, name: str, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not torch.stack([torch.isfinite(g).all() for g in grads]).all():
            self._bad_grads.append(name)
            if self.mode != "warn":
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        p.grad = None

    def update(self, batch, update: int, step: int) -> dict | None:
        """`agent.update(batch)`; its metrics, or None when skip dropped a non-finite update."""
        self._bad_grads = []
        metrics = self.agent.update(batch)
        finite = torch.stack([torch.isfinite(v).all() for v in metrics.values()]).tolist() if metrics else []
        bad = [k for k, ok in zip(metrics, finite) if not ok]
        if not bad and not self._bad_grads:
            self.last_finite = metrics
            return metrics
        self.count += 1
        parts = ([f"non-finite {', '.join(f'{k}={metrics[k].item():g}' for k in bad)}"] if bad else []) + \
            ([f"non-finite gradients of {', '.join(self._bad_grads)}"] if self._bad_grads else [])
        what = f"{'; '.join(parts)} in update {update} at step {step}"
        last = ", ".join(f"{k}={v.item():.4g}" for k, v in self.last_finite.items() if v.numel() == 1)
        if self.mode == "stop":
            diagnostic = self.run_dir / "diagnostic.pt"
            torch.save({"batch": batch.cpu(), "metrics": metrics, "last_finite": self.last_finite, "step": step,
                        "update": update, "agent": self.agent.state_dict()}, diagnostic)
            raise NonFiniteError(f"{what}. Last finite values: {last or 'none (the first update)'}. The batch "
                                 f"and the weights (before the step: non-finite gradients were not applied) are in "
                                 f"{diagnostic}. on_nonfinite=skip or warn carries on instead")
        if self.count <= 5 or self.count % 1000 == 0:
            Progress.write(f"Warning ({self.count} so far): {what}; "
                           + ("the update's non-finite optimiser steps were skipped" if self.mode == "skip"
                              else "carrying on (on_nonfinite=warn)"))
        return None if self.mode == "skip" else metrics

    def check_episode(self, episode, step: int) -> bool:
        """Whether an episode from the environment may enter replay: non-finite observations or rewards
        stop (stop), are dropped (skip) or pass with a warning (warn)."""
        bad = [k for k, v in episode.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if not bad:
            return True
        what = f"non-finite {', '.join(bad)} in the episode ending at step {step} (from the environment)"
        if self.mode == "stop":
            diagnostic = self.run_dir / "diagnostic.pt"
            torch.save({"episode": episode, "step": step}, diagnostic)
            raise NonFiniteError(f"{what}; the episode is in {diagnostic}")
        Progress.write(f"Warning: {what}; " + ("dropped" if self.mode == "skip" else "kept (on_nonfinite=warn)"))
        return self.mode == "warn"


def peak_memory_mb() -> float:
    """Peak GPU memory when on CUDA, else the process's peak resident memory."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Progress:
    """tqdm bar with its rate (`unit`s per second), last episode return, last eval return and ETA."""

    def __init__(self, total: int, initial: int, enabled: bool, unit: str = "step"):
        self.episode_return = self.eval_return = None
        self._bar = None
        if enabled:
            from tqdm import tqdm
            import sys
            # redraw at most once a second (every 30 s when the output is a log file, not a terminal)
            self._bar = tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True, smoothing=0.05,
                             mininterval=1.0 if sys.stderr.isatty() else 30.0,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def update(self, n: int) -> None:
        if self._bar is None:
            return
        self._bar.update(n)
        if self._bar.n % 100 < n:
            post = {}
            if self.episode_return is not None:
                post["return"] = f"{self.episode_return:.1f}"
            if self.eval_return is not None:
                post["eval"] = f"{self.eval_return:.1f}"
            self._bar.set_postfix(post, refresh=False)

    @staticmethod
    def write(message: str) -> None:
        from tqdm import tqdm
        tqdm.write(message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
