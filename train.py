"""Train an agent: python train.py task=cheetah-run model_size=5 steps=200000 seed=3 (see README)."""
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from common import checkpoint
from common.config import ConfigError, primary_discount, task_discounts, validate, validate_for_env
from common.dataset import DatasetError
from common.logger import Logger
from common.memory import keep_freed_memory
from common.precision import describe, resolve
from common.run import (RunDirError, Terminated, claim_run_dir, device_of, find_resume_checkpoint, hardware_info,
                        release_run_dir, restore, results_csv_name, seed_everything, terminate_like_ctrl_c,
                        write_run_info)
from envs import make_env
from src import make_agent  # (importing src registers the agents, whose rules validate() checks)
from src.tdmpc2.official import configure_from_file
from trainer import make_trainer, trainer_class
from trainer.base import NonFiniteError


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg) -> None:
    try:
        if cfg.checkpoint:  # an official TD-MPC2 checkpoint records no config: its weight shapes set the sizes
            configure_from_file(cfg)
        cfg = validate(cfg)
    except (ConfigError, checkpoint.CheckpointError) as e:
        sys.exit(f"Config error: {e}")
    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run_dir = claim_run_dir(hydra_dir, HydraConfig.get().overrides.task)
    except RunDirError as e:
        sys.exit(f"Run directory error: {e}")
    try:
        run(cfg, run_dir)
    except OSError as e:  # a read-only, full or vanished run directory: one line naming the path
        sys.exit(f"File error: {e.strerror or e} ({e.filename})" if e.filename else f"File error: {e}")
    finally:
        release_run_dir(run_dir)


def run(cfg, run_dir: Path) -> None:
    keep_freed_memory()
    seed_everything(cfg)
    env, spec = make_env(cfg)
    try:
        validate_for_env(cfg, spec)
    except ConfigError as e:
        sys.exit(f"Config error: {e}")
    device = device_of(cfg)
    agent = make_agent(cfg, spec, device)
    counts = agent.parameter_counts()
    if spec.multitask:  # per task: true obs/action dims (padded to the largest), episode length, discount
        what = f"{len(spec.tasks)} tasks ({spec.obs_shape} obs, {spec.action_dim} actions, padded: " + "; ".join(
            f"{t} {o} obs, {a} actions, episode {n}, discount {float(d):.4f}" for t, o, a, n, d in
            zip(spec.tasks, spec.obs_dims, spec.action_dims, spec.episode_lengths, task_discounts(cfg, spec))) + ")"
    else:
        what = (f"{cfg.task} ({spec.obs_shape} obs, {spec.action_dim} actions, episode {spec.episode_length} steps, "
                f"discount {primary_discount(cfg, spec):.4f})")
    print(f"{cfg.agent} on {what} on {device}, {describe(cfg.precision, device)}; parameters: "
          + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    try:
        buffer = trainer_class(cfg).make_buffer(cfg, spec, agent, run_dir, device)
    except DatasetError as e:
        sys.exit(f"Dataset error: {e}")
    logger = Logger(run_dir, cfg)
    write_run_info(run_dir, cfg, counts, hardware_info(device, resolve(cfg.precision, device)))
    trainer = make_trainer(cfg, env, spec, agent, buffer, logger, run_dir)

    sweep_overrides = list(HydraConfig.get().overrides.task) if HydraConfig.get().mode == RunMode.MULTIRUN else None
    if cfg.resume or cfg.checkpoint:  # a sweep's job resumes the earlier job with its overrides
        try:
            path = Path(cfg.checkpoint) if cfg.checkpoint else find_resume_checkpoint(
                run_dir, sweep_overrides)
            print(restore(path, cfg, agent, trainer, buffer, logger, run_dir, device))
        except (checkpoint.CheckpointError, ValueError) as e:
            sys.exit(f"Cannot resume: {e}")

    terminate_like_ctrl_c()
    try:
        trainer.train()
    except KeyboardInterrupt as e:
        sys.exit(143 if isinstance(e, Terminated) else 130)
    except NonFiniteError as e:
        sys.exit(f"Stopped: {e}")
    except checkpoint.CheckpointError as e:
        sys.exit(f"Stopped: {e}")
    finally:
        logger.close()
    # a sweep's jobs: their overrides join the curve's file name
    results = Path(hydra.utils.get_original_cwd()) / "results" / "runs" / spec.task / results_csv_name(
        cfg, sweep_overrides)
    print(trainer.finish_run(results))


if __name__ == "__main__":
    main()
