"""What every trainer shares: evaluation in the real environment, checkpoints of the trainer's state,
multi-discount debug snapshots, the progress bar and the peak-memory reading."""
import json
import resource
import time
from pathlib import Path

import torch

from common import checkpoint


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
        self._next_multi_gamma_log = 0  # not checkpointed: a resumed run writes its first snapshot at once

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        raise NotImplementedError

    def load_state(self, state: dict) -> None:
        raise NotImplementedError

    def checkpoint_buffer(self):
        """The buffer to save beside a checkpoint, or None."""
        return None

    def save_checkpoint(self) -> None:
        checkpoint.save(self.ckpt_path, self.cfg, self.spec, self.agent, {**self.state(), "trainer": self.name},
                        self.checkpoint_buffer())

    # ------------------------------------------------------------------ evaluation
    def _checkpoint_on_interrupt(self, start: float, what: str) -> None:
        """Ctrl-C: save a checkpoint at `self.step` (`what` says what that step is), then tell how to resume."""
        print(f"\nInterrupted: saving a checkpoint at {what} ...")
        self._elapsed = time.time() - start
        self.save_checkpoint()
        print(f"Saved {self.ckpt_path}. Continue with the same command plus resume=true.")

    def evaluate(self) -> dict:
        """`eval_episodes` episodes. With several tasks, `eval_episodes` per task: `episode_reward/<task>` and
        `episode_reward_std/<task>` per task, and `episode_reward`, `episode_success`, `episode_length` as the
        mean over tasks (each task counts once, whatever its episode length)."""
        if not self.spec.multitask:
            return self._evaluate_episodes()
        per_task = {name: self._evaluate_episodes(task) for task, name in enumerate(self.spec.tasks)}
        row = {key: sum(r[key] for r in per_task.values()) / len(per_task)
               for key in ("episode_reward", "episode_success", "episode_length")}
        for name, r in per_task.items():
            row[f"episode_reward/{name}"], row[f"episode_reward_std/{name}"] = r["episode_reward"], \
                r["episode_reward_std"]
        return row

    def _evaluate_episodes(self, task: int | None = None) -> dict:
        returns, successes, lengths = [], [], []
        for _ in range(self.cfg.eval_episodes):
            ret, length, info = self._run_episode(eval_mode=True, task=task)
            returns.append(ret)
            lengths.append(length)
            successes.append(info.get("success", 0.0))
        t = torch.tensor(returns)
        return {"episode_reward": t.mean().item(), "episode_reward_std": t.std().item()
                if len(t) > 1 else 0.0, "episode_success": sum(successes) / len(successes),
                "episode_length": sum(lengths) / len(lengths)}

    def _task_kwargs(self) -> dict:
        """With several tasks, {'task': the env's current task id} for agent.act and the buffer; else {}."""
        return {"task": self.env.task_id} if self.spec.multitask else {}

    def _run_episode(self, eval_mode: bool, task: int | None = None):
        """One episode; `task` picks the task of a multi-task env (without moving its rotation)."""
        obs = self.env.reset() if task is None else self.env.reset(task=task)
        done, ret, t, info = False, 0.0, 0, {}
        while not done:
            action = self.agent.act(obs, t0=t == 0, eval_mode=eval_mode, **self._task_kwargs())
            obs, reward, done, info = self.env.step(action)
            ret, t = ret + reward, t + 1
        return ret, t, info

    def _log_eval(self, start: float) -> dict:
        """Evaluate and write an eval.csv row at the current step; `start` is the run's (resumed) start time."""
        row = self.evaluate()
        self._elapsed = time.time() - start
        self.logger.log({**row, "elapsed_time": self._elapsed}, self.step, "eval")
        return row

    def _multi_gamma_snapshot(self) -> None:
        """Every multi_gamma.log_interval_steps steps (at the first call past each multiple; online: episode
        ends), a bounded snapshot of the auxiliary heads as JSON lines: the standard tier has 4 examples'
        targets and predictions, multi_gamma.debug_logging=true up to log_num_examples with every field."""
        mg = self.cfg.multi_gamma
        if not (mg.enabled and len(self.buffer) > 0) or self.step < self._next_multi_gamma_log:
            return
        self._next_multi_gamma_log = (self.step // mg.log_interval_steps + 1) * mg.log_interval_steps
        examples = mg.log_num_examples if mg.debug_logging else min(4, mg.log_num_examples)
        records = self.agent.multi_gamma_snapshot(self.buffer.sample(), examples, full=mg.debug_logging)
        with open(self.run_dir / "multi_gamma_snapshots.jsonl", "a") as f:
            for record in records:
                f.write(json.dumps({"step": self.step, **record}) + "\n")


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
