"""Checkpoints of the official TD-MPC2 code (github.com/nicklashansen/tdmpc2; `TDMPC2.save` writes
`{"model": state_dict}`): recognise them, read the architecture off the weight shapes, convert them to ours.

    python -m src.tdmpc2.official info IN.pt
    python -m src.tdmpc2.official convert IN.pt OUT.pt task=cheetah-run [key=value ...]

`common.checkpoint.load` converts one on load, so `evaluate.py checkpoint=OFFICIAL.pt task=...` and
`train.py checkpoint=OFFICIAL.pt task=...` (fine-tuning) take them as they are. An official checkpoint records no
task, no config, no optimiser state and no policy-loss scale: the task comes from `task=`, the sizes from the
shapes (`configure`), the rest of the config from ours (the official defaults), and fine-tuning starts the
optimisers and the scale fresh.
"""
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import OmegaConf

from common.checkpoint import FORMAT_VERSION, CheckpointError, rng_state
from common.config import ConfigError, validate, validate_for_env
from common.tasks import task_list
from src.base import make_agent

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# official module prefix -> ours, for the networks whose layout is the same (nn.Sequential of NormedLinear)
PREFIXES = {"_encoder.state.": "encoder.", "_dynamics.": "dynamics.", "_reward.": "reward_head.",
            "_termination.": "termination_head.", "_pi.": "policy_prior.", "_task_emb.": "task_emb.",
            "_action_masks": "action_masks"}
# Q ensembles: official (num_q, out, in) stacked nn.Linear weights -> our EnsembleMLP's (num_q, in, out)
ENSEMBLES = {"_Qs.params.": "q_ensemble.", "_target_Qs_params.": "target_q."}
SKIPPED = ("_detach_Qs_params.",)  # the official gradient-free view of _Qs.params: the same tensors
BUFFERS = ("log_std_min", "log_std_dif")  # config values here (log_std_min/max)
OLD_FIELDS = ("weight", "bias", "ln.weight", "ln.bias")  # the older layout's _Qs.params.N: N = 4 * layer + field
FRESH = ("multi_gamma_head.", "aux_heads.")  # our own heads, absent from official checkpoints: keep their init
SIZE_KEYS = ("enc_dim", "mlp_dim", "latent_dim", "num_enc_layers", "num_q")


def is_official(obj) -> bool:
    """`{"model": state_dict}` (or a bare state dict) with the official TD-MPC2 key names."""
    if not isinstance(obj, Mapping) or "format_version" in obj:
        return False
    state = obj.get("model", obj)
    return isinstance(state, Mapping) and any(str(k).startswith("_encoder.") for k in state)


def read(path) -> dict | None:
    """The official state dict in `path`, or None when the file is missing, unreadable or not official."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return None
    return state_dict(obj) if is_official(obj) else None


def state_dict(obj) -> dict:
    """The state dict in the current official layout. The older one (before the Q ensembles became TensorDict
    parameters) names the stacked Q weights `_Qs.params.N` / `_target_Qs.params.N`; they are renamed as the
    official loader (`api_model_conversion`) does. TensorDict metadata and the detached Q view are dropped."""
    state = dict(obj.get("model", obj))
    for old, new in (("_Qs.params.", "_Qs.params."), ("_target_Qs.params.", "_target_Qs_params.")):
        for key in [k for k in state if k.startswith(old) and k[len(old):].isdigit()]:
            n = int(key[len(old):])
            state[f"{new}{n // 4}.{OLD_FIELDS[n % 4]}"] = state.pop(key)
    return {k: v for k, v in state.items()
            if not k.endswith(("__batch_size", "__device")) and not k.startswith(SKIPPED)}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What the weight shapes say (the official `layers.mlp` / `enc` layouts)."""
    obs_dim: int
    action_dim: int
    enc_dim: int
    mlp_dim: int
    latent_dim: int
    num_enc_layers: int
    num_q: int
    num_bins: int
    episodic: bool
    num_tasks: int = 1
    task_dim: int = 0
    action_dims: tuple[int, ...] = ()  # per task, from `_action_masks` (several tasks)
    log_std: tuple[float, float] | None = None  # (min, max) from the buffers, when saved

    def sizes(self) -> dict:
        return {k: getattr(self, k) for k in SIZE_KEYS}

    def describe(self, presets: Mapping) -> str:
        preset = matching_preset(self, presets)
        size = f"model_size {preset}" if preset is not None else "no model_size preset"
        tasks = (f"{self.num_tasks} tasks (task_dim {self.task_dim}, action dims {list(self.action_dims)})"
                 if self.num_tasks > 1 else "1 task")
        log_std = f", log_std [{self.log_std[0]:g}, {self.log_std[1]:g}]" if self.log_std else ""
        return (f"{size} ({', '.join(f'{k} {v}' for k, v in self.sizes().items())}), {self.num_bins} bins, "
                f"obs {self.obs_dim}, actions {self.action_dim}, {'episodic' if self.episodic else 'not episodic'}"
                f" (termination head {'present' if self.episodic else 'absent'}), {tasks}{log_std}")


def _shape(state: dict, key: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{key}: missing from the official checkpoint (an official TD-MPC2 state dict has it)")
    return tuple(state[key].shape)


def infer(state: dict) -> Architecture:
    """The architecture from the weight shapes; `model_state` then checks every other weight against it."""
    other = sorted({k.split(".")[1] for k in state
                    if k.startswith("_encoder.") and not k.startswith("_encoder.state.")})
    if other:
        raise CheckpointError(f"_encoder.{other[0]}.*: only the official state encoder (_encoder.state.*) maps onto "
                              "ours; the official pixel encoder feeds the convolutions' output straight into SimNorm, "
                              "ours adds a Linear and a LayerNorm")
    enc_layers = len({k.split(".")[2] for k in state if k.startswith("_encoder.state.") and k.endswith(".weight")
                      and not k.endswith("ln.weight")})
    task_dim, num_tasks = (_shape(state, "_task_emb.weight")[::-1] if "_task_emb.weight" in state else (0, 1))
    action_dims = tuple(int(row.sum()) for row in state["_action_masks"]) if "_action_masks" in state else ()
    log_std = None
    if all(k in state for k in BUFFERS):
        low = float(state["log_std_min"])
        log_std = (low, low + float(state["log_std_dif"]))
    return Architecture(
        obs_dim=_shape(state, "_encoder.state.0.weight")[1] - task_dim,
        action_dim=_shape(state, "_pi.2.weight")[0] // 2,
        enc_dim=_shape(state, "_encoder.state.0.weight")[0], mlp_dim=_shape(state, "_dynamics.0.weight")[0],
        latent_dim=_shape(state, "_dynamics.2.weight")[0],
        num_enc_layers=enc_layers,  # the official encoder has max(num_enc_layers - 1, 1) hidden layers + output
        num_q=_shape(state, "_Qs.params.0.weight")[0], num_bins=_shape(state, "_reward.2.weight")[0],
        episodic="_termination.0.weight" in state, num_tasks=num_tasks, task_dim=task_dim, action_dims=action_dims,
        log_std=log_std)


def matching_preset(arch: Architecture, presets: Mapping):
    return next((size for size, row in presets.items() if dict(row) == arch.sizes()), None)


def configure(cfg, state: dict) -> Architecture:
    """Set the architecture keys of the (not yet validated) `cfg` from the official weights: `model_size` when the
    sizes are a preset's, else the size keys themselves (and `model_size: null`); `num_bins`, `episodic` (a
    termination head), `task_dim`, `log_std_min/max`. The task list must have as many tasks as the embedding."""
    arch = infer(state)
    tasks = task_list(cfg.task)
    if cfg.agent != "tdmpc2":
        raise ConfigError(f"agent={cfg.agent}: an official TD-MPC2 checkpoint needs agent=tdmpc2")
    if len(tasks) != arch.num_tasks:
        has, fix = ((f"a task embedding _task_emb.weight {_shape(state, '_task_emb.weight')} for {arch.num_tasks} "
                     "tasks", "give its task list, in its order") if arch.num_tasks > 1 else
                    ("no task embedding (a single-task model)", "give one task"))
        label = cfg.task if isinstance(cfg.task, str) else list(cfg.task)
        raise ConfigError(f"task={label}: {len(tasks)} task(s), but the official checkpoint has {has}; {fix}")
    preset = matching_preset(arch, cfg.model_presets)
    cfg.model_size = preset
    for key, value in arch.sizes().items():
        cfg[key] = value
    cfg.num_bins, cfg.episodic = arch.num_bins, arch.episodic
    if arch.num_tasks > 1:
        cfg.task_dim = arch.task_dim
    if arch.log_std is not None:
        cfg.log_std_min, cfg.log_std_max = arch.log_std
    return arch


def configure_from_file(cfg) -> None:
    """train.py checkpoint=PATH: when PATH is an official checkpoint, set `cfg`'s architecture from it (see
    `configure`); our own checkpoints (and missing files, reported later) leave `cfg` as it is."""
    state = read(cfg.checkpoint)
    if state is not None:
        arch = configure(cfg, state)
        print(f"Official TD-MPC2 checkpoint {cfg.checkpoint}: {arch.describe(cfg.model_presets)}; converted on load")


def compose(overrides=()):
    """Our default config with Hydra `overrides` (not validated)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    if GlobalHydra.instance().is_initialized():  # inside evaluate.py's @hydra.main, which reads the same conf/
        return hydra_compose("config", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def config_for(state: dict, task=None, overrides=()):
    """The validated config for converting `state`: ours with `overrides`, `task` and the checkpoint's sizes."""
    cfg = compose(overrides)
    if task is not None:
        cfg.task = task
    configure(cfg, state)
    return validate(cfg)


def _to_ours(t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "ensemble_weight":
        return t.transpose(1, 2)  # (num_q, out, in) -> (num_q, in, out)
    if kind == "ensemble_vector":
        return t.unsqueeze(1)  # (num_q, d) -> (num_q, 1, d)
    return t


def _official_shape(shape, kind: str) -> tuple[int, ...]:
    shape = tuple(shape)
    if kind == "ensemble_weight":
        return (shape[0], shape[2], shape[1])
    if kind == "ensemble_vector":
        return (shape[0], shape[2])
    return shape


def _our_key(key: str, last_layer: dict) -> tuple[str, str]:
    """(our key, kind) of an official key; kind says how the tensor is laid out differently."""
    for prefix, ours in PREFIXES.items():
        if key.startswith(prefix):
            return ours + key[len(prefix):], "same"
    for prefix, ours in ENSEMBLES.items():
        if key.startswith(prefix):
            layer, field = key[len(prefix):].split(".", 1)
            if int(layer) == last_layer[prefix]:  # the plain output Linear
                return f"{ours}out.{field}", "ensemble_weight" if field == "weight" else "ensemble_vector"
            module = {"weight": "hidden", "bias": "hidden", "ln.weight": "norms", "ln.bias": "norms"}[field]
            kind = "ensemble_weight" if field == "weight" else "ensemble_vector"
            return f"{ours}{module}.{layer}.{field.split('.')[-1]}", kind
    raise CheckpointError(f"{key}: not a key of the official TD-MPC2 layout this converter knows")


def model_state(state: dict, model: torch.nn.Module, arch: Architecture) -> dict:
    """Our world model's state dict holding the official weights. Every official weight must have the shape that
    `model` (built for the inferred architecture and the task) needs; the message names the key and both shapes."""
    ours = model.state_dict()
    last_layer = {p: max((int(k[len(p):].split(".")[0]) for k in state if k.startswith(p)), default=-1)
                  for p in ENSEMBLES}
    what = ", ".join(f"{k}={v}" for k, v in arch.sizes().items())
    converted = {}
    for key, tensor in state.items():
        if key in BUFFERS:
            continue
        our_key, kind = _our_key(key, last_layer)
        if our_key not in ours:
            raise CheckpointError(f"{key}: the model built for this config has no {our_key} (is the task right?)")
        if _to_ours(tensor, kind).shape != ours[our_key].shape:
            raise CheckpointError(f"{key}: the checkpoint's shape is {tuple(tensor.shape)}, but the architecture read "
                                  f"from its other weights ({what}, obs {arch.obs_dim}, actions {arch.action_dim}) "
                                  f"and the task need {_official_shape(ours[our_key].shape, kind)}")
        converted[our_key] = _to_ours(tensor, kind).to(ours[our_key].dtype)
    if "action_masks" in converted and not torch.equal(converted["action_masks"], ours["action_masks"]):
        raise CheckpointError(f"_action_masks: the checkpoint's tasks have {list(arch.action_dims)} action dims, "
                              f"the given tasks {[int(r.sum()) for r in ours['action_masks']]}")
    missing = [k for k in ours if k not in converted and not k.startswith(FRESH)]
    if missing:
        reverse = {v: k for k, v in {**PREFIXES, **ENSEMBLES}.items()}
        names = sorted({next((o for p, o in reverse.items() if k.startswith(p)), k) for k in missing})
        raise CheckpointError(f"the official checkpoint has no weights for {', '.join(n + '*' for n in names)}, "
                              f"which the model built for this config needs ({', '.join(missing[:4])}...)")
    return {k: converted.get(k, v) for k, v in ours.items()}


def to_payload(obj, cfg) -> dict:
    """A checkpoint payload in our format (common/checkpoint.py) for the official checkpoint `obj`, built for the
    validated `cfg`: the agent holds the official weights and fresh optimisers and scale; it counts as written by
    the 'official' trainer at step 0, so train.py takes the agent only (counters, replay and metrics start fresh)."""
    state = state_dict(obj)
    arch = infer(state)
    from envs import make_env  # deferred on purpose: envs imports src (checkpoint opponents), not the reverse
    env, spec = make_env(cfg)
    env.close()
    validate_for_env(cfg, spec)
    if (spec.obs_shape[0], spec.action_dim) != (arch.obs_dim, arch.action_dim):
        raise CheckpointError(
            f"task={cfg.task} has {spec.obs_shape[0]} observation and {spec.action_dim} action dims, but the official "
            f"checkpoint's encoder takes {arch.obs_dim} (_encoder.state.0.weight "
            f"{_shape(state, '_encoder.state.0.weight')})"
            f" and its policy gives {arch.action_dim} (_pi.2.weight {_shape(state, '_pi.2.weight')})")
    agent = make_agent(cfg, spec, torch.device("cpu"))
    agent.model.load_state_dict(model_state(state, agent.model, arch))
    return {"format_version": FORMAT_VERSION, "config": OmegaConf.to_container(cfg, resolve=True),
            "spec": dataclasses.asdict(spec), "agent": agent.state_dict(), "policy_only": False,
            "trainer": {"step": 0, "trainer": "official"}, "rng": rng_state(), "buffer_dir": None,
            "buffer_state": None}


def convert(obj, cfg, task) -> dict:
    """The converter common/checkpoint.py calls (registered in src/__init__.py): our payload for `cfg`, or
    without one for `task` with the default config and the sizes the weights have."""
    return to_payload(obj, cfg if cfg is not None else config_for(state_dict(obj), task))


def main(argv=None) -> None:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m src.tdmpc2.official", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="print the architecture an official checkpoint holds")
    info.add_argument("path")
    convert = commands.add_parser("convert", help="write an official checkpoint in this framework's format")
    convert.add_argument("src")
    convert.add_argument("dst")
    convert.add_argument("overrides", nargs="+", metavar="key=value", help="task=... (required), any config key")
    args = parser.parse_args(argv)
    path = args.path if args.command == "info" else args.src
    if not Path(path).is_file():
        sys.exit(f"{path} does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if not is_official(obj):
        sys.exit(f"{path} is not an official TD-MPC2 checkpoint (no {{'model': state_dict}} with _encoder.* keys)")
    state = state_dict(obj)
    try:
        if args.command == "info":
            arch = infer(state)
            old = any(k.startswith("_target_Qs.params.") for k in obj.get("model", obj))
            print(f"{path}: official TD-MPC2 checkpoint, {'older' if old else 'current'} layout, {len(state)} tensors")
            print(f"  {arch.describe(OmegaConf.load(CONF_DIR / 'agent' / 'tdmpc2.yaml').model_presets)}")
            return
        if not any(o.startswith("task=") for o in args.overrides):
            sys.exit("convert needs the task the checkpoint was trained on: task=NAME (several: task=[a,b,...])")
        cfg = config_for(state, overrides=args.overrides)
        payload = to_payload(obj, cfg)
    except (ConfigError, CheckpointError) as e:
        sys.exit(f"Cannot convert {path}: {e}")
    Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, args.dst)
    print(f"Wrote {args.dst} (task {cfg.task}, {infer(state).describe(cfg.model_presets)})")


if __name__ == "__main__":
    main()
