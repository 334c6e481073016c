"""Run logging: CSV files that survive SIGKILL, optional TensorBoard and W&B, reference-format results."""
import csv
import io
import os
from pathlib import Path

import torch
from omegaconf import OmegaConf


class CSVLog:
    """Append-only CSV whose header grows when a new metric first appears. Each row is flushed and
    fsync-ed, so a killed run leaves at most one partial last line, which `truncate_after` drops."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] = []
        if path.exists():
            with open(path, newline="") as f:
                header = f.readline().strip()
            self.columns = header.split(",") if header else []

    def write(self, row: dict) -> None:
        new = [k for k in row if k not in self.columns]
        if new or not self.path.exists():
            self.columns += new
            self._rewrite(self.rows())
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: _fmt(v) for k, v in row.items()})
            f.flush()
            os.fsync(f.fileno())

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            text = f.read()
        if text and not text.endswith("\n"):  # partial row from a killed run
            text = text[: text.rfind("\n") + 1]
        return list(csv.DictReader(io.StringIO(text)))

    def truncate_after(self, step: int) -> None:
        """Keep only complete rows up to `step` (resuming from a checkpoint that did not count its rows)."""
        self._rewrite([r for r in self.checked_rows() if float(r["step"]) <= step])

    def truncate_to(self, n: int) -> None:
        """Keep the first `n` rows: those written before the checkpoint being resumed."""
        self._rewrite(self.checked_rows()[:n])

    def checked_rows(self) -> list[dict]:
        """`rows()`, each with a numeric step; ValueError naming the file and line otherwise."""
        rows = self.rows()
        for line, row in enumerate(rows, start=2):
            try:
                float(row.get("step") or "")
            except ValueError:
                raise ValueError(f"{self.path} line {line}: step={row.get('step')!r} is not a number (a damaged "
                                 "metrics file; repair or remove that line)") from None
        return rows

    def _rewrite(self, rows: list[dict]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _fmt(v):
    if isinstance(v, torch.Tensor):
        v = v.item()
    return f"{v:.6g}" if isinstance(v, float) else v


class Logger:
    """`log(metrics, step, category)` writes `metrics/{category}.csv` always, TensorBoard / W&B when enabled."""

    def __init__(self, run_dir: Path, cfg):
        self.run_dir = Path(run_dir)
        (self.run_dir / "metrics").mkdir(parents=True, exist_ok=True)
        self._csv: dict[str, CSVLog] = {}
        self._tb = None
        if cfg.logger.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        self._wandb = None
        if cfg.logger.wandb:
            try:
                import wandb
            except ImportError:
                raise RuntimeError("logger.wandb=true but the wandb package is not installed (pip install wandb)")
            # offline unless the user asked otherwise (WANDB_MODE=online), so runs never hang without network
            self._wandb = wandb.init(project=cfg.logger.wandb_project, entity=cfg.logger.wandb_entity,
                                     dir=str(self.run_dir), mode=os.environ.get("WANDB_MODE", "offline"),
                                     config=OmegaConf.to_container(cfg), name=self.run_dir.name)

    def csv(self, category: str) -> CSVLog:
        if category not in self._csv:
            self._csv[category] = CSVLog(self.run_dir / "metrics" / f"{category}.csv")
        return self._csv[category]

    def log(self, metrics: dict, step: int, category: str = "train") -> None:
        row = {"step": step, **{k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}}
        self.csv(category).write(row)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                if self._tb is not None:
                    self._tb.add_scalar(f"{category}/{key}", value, step)
        if self._wandb is not None:
            self._wandb.log({f"{category}/{k}": v for k, v in row.items() if k != "step"}, step=step)

    def truncate_after(self, step: int) -> None:
        for path in (self.run_dir / "metrics").glob("*.csv"):
            self.csv(path.stem).truncate_after(step)

    def row_counts(self) -> dict:
        """{category: complete rows} of every metrics file, recorded in checkpoints (`truncate_to`)."""
        return {path.stem: len(self.csv(path.stem).rows()) for path in (self.run_dir / "metrics").glob("*.csv")}

    def truncate_to(self, counts: dict) -> None:
        """Cut every metrics file to the rows a checkpoint counted: rows written after it are gone, so a
        resumed run writes each row exactly once (a file the checkpoint did not know is emptied)."""
        for path in (self.run_dir / "metrics").glob("*.csv"):
            self.csv(path.stem).truncate_to(counts.get(path.stem, 0))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def write_reference_csv(eval_rows: list[dict], path: Path, seed: int) -> None:
    """Eval curve in the published reference format `step,reward,seed` (see shared reference_results)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "reward", "seed"])
        for row in eval_rows:
            writer.writerow([int(float(row["step"])), row["episode_reward"], seed])
