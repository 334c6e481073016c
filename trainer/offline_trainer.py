"""Offline training: updates from fixed datasets only; the environment is used for evaluation alone."""
import time
from pathlib import Path

from common.config import dataset_paths
from common.dataset import load_buffer
from trainer.base import BaseTrainer, peak_memory_mb


class OfflineTrainer(BaseTrainer):
    """Runs `steps` updates (gradient steps, not environment steps) on batches from the dataset buffer.

    Here `steps`, `eval_freq`, `checkpoint_freq`, `log_interval` and the `step` column of every CSV count
    updates. Evaluates at update 0, every `eval_freq` updates and at the end; writes a train.csv row of
    mean losses and updates per second every `log_interval` updates; checkpoints every `checkpoint_freq`
    updates, at the end and on Ctrl-C (no buffer is saved: the datasets stay where they are).
    """
    name = "offline"
    progress_unit = "update"

    def __init__(self, cfg, env, spec, agent, buffer, logger, run_dir: Path):
        super().__init__(cfg, env, spec, agent, buffer, logger, run_dir)
        self._next_eval, self._next_ckpt, self._next_log = 0, cfg.checkpoint_freq, cfg.log_interval

    @property
    def updates(self) -> int:
        return self.step

    @staticmethod
    def make_buffer(cfg, spec, agent, run_dir: Path, device):
        """The datasets, checked against each other and the env before anything trains (DatasetError)."""
        buffer, summary = load_buffer(dataset_paths(cfg), spec, agent.seq_len, agent.batch_size, device,
                                      **cfg.dataset_filter, scratch_dir=str(run_dir / "dataset_memmap"),
                                      cross_episodes=agent.sequences_cross_episodes)
        print(f"Offline data: {summary}")
        return buffer

    def finish_run(self, results_csv: Path) -> str:
        """Its steps are updates: no curve in the reference format (environment steps)."""
        return f"Done: {self.step} updates. Run directory {self.run_dir}"

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {"step": self.step, "updates": self.step, "next_eval": self._next_eval,
                "next_ckpt": self._next_ckpt, "next_log": self._next_log, "elapsed": self._elapsed}

    def load_state(self, state: dict) -> None:
        self.step = state["step"]
        self._next_eval, self._next_ckpt, self._next_log = state["next_eval"], state["next_ckpt"], state["next_log"]
        self._elapsed = state["elapsed"]
        self.load_common_state(state)

    # ------------------------------------------------------------------ loop
    def _start_training(self) -> None:
        self._new_row()

    def _new_row(self) -> None:
        self._sums, self._count, self._update_time = {}, 0, 0.0  # since the last train.csv row

    def _train_unit(self, start: float, progress) -> None:
        """One update; a train.csv row every `log_interval` updates and at the last."""
        cfg = self.cfg
        self._write_diagnostics()
        t0 = time.perf_counter()
        metrics = self.guard.update(self.buffer.sample(), self.step + 1, self.step + 1)
        dt = time.perf_counter() - t0
        self._update_time += dt
        if metrics is not None:  # None: on_nonfinite=skip dropped it
            self._count += 1
            for k, v in metrics.items():
                self._sums[k] = self._sums.get(k, 0.0) + v
            self._sums["update_ms"] = self._sums.get("update_ms", 0.0) + 1e3 * dt
        self.step += 1
        progress.update(1)
        if self.step >= self._next_log or self.step == cfg.steps:
            self._elapsed = time.time() - start
            # updates per second: sampling included, evaluation excluded
            row = {"updates": self.step, "updates_per_second": self._count / max(self._update_time, 1e-9),
                   "elapsed_time": self._elapsed, "peak_memory_mb": peak_memory_mb(),
                   **{k: (v / self._count) for k, v in self._sums.items()}}
            self.logger.log(row, self.step, "train")
            self._new_row()
            self._next_log = (self.step // cfg.log_interval + 1) * cfg.log_interval

    def _resume_point(self) -> str:
        return f"update {self.step}"
