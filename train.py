"""Train an agent: python train.py task=cheetah-run model_size=5 steps=200000 seed=3 (see README)."""
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

import src  # noqa: F401  (registers the agents, whose rules validate() checks)
from common import checkpoint
from common.config import ConfigError, primary_discount, task_discounts, validate, validate_for_env
from common.memory import keep_freed_memory


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg) -> None:
    try:
        if cfg.checkpoint:  # an official TD-MPC2 checkpoint records no config: its weight shapes set the sizes
            from src.tdmpc2.official import configure_from_file
            configure_from_file(cfg)
        cfg = validate(cfg)
    except (ConfigError, checkpoint.CheckpointError) as e:
        sys.exit(f"Config error: {e}")
    from common.run import RunDirError, claim_run_dir, release_run_dir
    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run_dir = claim_run_dir(hydra_dir, HydraConfig.get().overrides.task)
    except RunDirError as e:
        sys.exit(f"Run directory error: {e}")
    try:
        run(cfg, run_dir, hydra_dir)
    except OSError as e:  # a read-only, full or vanished run directory: one line naming the path
        sys.exit(f"File error: {e.strerror or e} ({e.filename})" if e.filename else f"File error: {e}")
    finally:
        release_run_dir(run_dir)


def run(cfg, run_dir: Path, hydra_dir: Path) -> None:
    from common.buffer import Buffer
    from common.logger import Logger, write_reference_csv
    from common.run import (buffer_capacity, buffer_storage, device_of, find_resume_checkpoint, restore,
                            results_csv_name, seed_everything, terminate_like_ctrl_c, Terminated, write_run_info)
    from envs import make_env
    from src import make_agent
    from trainer import make_trainer
    from trainer.base import NonFiniteError

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
    from common.precision import describe
    print(f"{cfg.agent} on {what} on {device}, {describe(cfg.precision, device)}; parameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if cfg.trainer == "offline":  # the datasets, checked against each other and the env before anything trains
        from common.config import dataset_paths
        from common.dataset import DatasetError, load_buffer
        try:
            buffer, summary = load_buffer(dataset_paths(cfg), spec, agent.seq_len, agent.batch_size, device,
                                          **cfg.dataset_filter, scratch_dir=str(run_dir / "dataset_memmap"),
                                          cross_episodes=agent.sequences_cross_episodes)
        except DatasetError as e:
            sys.exit(f"Dataset error: {e}")
        print(f"Offline data: {summary}")
    elif cfg.trainer == "onpolicy":  # learns from each rollout once: no replay
        buffer = None
    else:
        buffer = Buffer(buffer_capacity(cfg, spec), agent.seq_len, agent.batch_size, buffer_storage(cfg, spec),
                        scratch_dir=str(run_dir / "buffer_memmap"), device=device,
                        cross_episodes=agent.sequences_cross_episodes)
    logger = Logger(run_dir, cfg)
    write_run_info(run_dir, cfg, counts)
    trainer = make_trainer(cfg, env, spec, agent, buffer, logger, run_dir)

    if cfg.resume or cfg.checkpoint:
        try:
            path = Path(cfg.checkpoint) if cfg.checkpoint else find_resume_checkpoint(
                run_dir, HydraConfig.get().mode == RunMode.MULTIRUN, hydra_dir.name)
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
    if cfg.trainer == "online" and cfg.save_dataset:
        from common.dataset import export_buffer
        manifest = export_buffer(buffer, run_dir / "dataset", cfg, spec,
                                 source={"run_dir": str(run_dir.resolve()), "step": trainer.step})
        print(f"Dataset {run_dir / 'dataset'}: {manifest['num_episodes']} episodes, {manifest['num_steps']} steps")
    if cfg.trainer == "offline":  # its steps are updates: no curve in the reference format (environment steps)
        print(f"Done: {trainer.step} updates. Run directory {run_dir}")
        return
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN  # a sweep's jobs: their overrides join the name
    results = Path(hydra.utils.get_original_cwd()) / "results" / "runs" / spec.task / results_csv_name(
        cfg, list(HydraConfig.get().overrides.task) if multirun else None)
    write_reference_csv(logger.csv("eval").rows(), results, cfg.seed)
    print(f"Done: {trainer.step} steps. Run directory {run_dir}; eval curve {results}")


if __name__ == "__main__":
    main()
