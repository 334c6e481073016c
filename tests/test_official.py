"""Official TD-MPC2 checkpoints: numerical parity with the official code's outputs, the key mapping (episodic,
multi-task, the older layout) checked against an independent forward pass, and clear errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common import checkpoint
from src.policy import load_agent
from src.tdmpc2 import official
from tests.conftest import ROOT, run_train

DATA = ROOT.parent / "shared" / "data" / "tdmpc2_official"


def _official_file(size: int):
    path = DATA / f"size{size}_cheetah-run" / "official_checkpoint.pt"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture
def noise(monkeypatch):
    """pi's noise: `noise.eps = tensor` makes torch.randn_like return it (the official outputs used given noise)."""
    class Noise:
        eps = None
    monkeypatch.setattr(torch, "randn_like", lambda t: Noise.eps)
    return Noise


@pytest.mark.parametrize("size, num_q, latent", [(1, 2, 128), (5, 5, 512)])
def test_parity_with_the_official_outputs(size, num_q, latent, noise):
    agent, cfg, spec = load_agent(_official_file(size), task="cheetah-run")
    assert (cfg.model_size, cfg.num_q, cfg.latent_dim, cfg.episodic) == (size, num_q, latent, False)
    m = agent.model.eval()
    ref = {k: torch.from_numpy(v) for k, v in np.load(_official_file(size).parent / "parity.npz").items()}
    noise.eps = ref["eps"]
    with torch.no_grad():
        action, info = m.pi(ref["z"])
        ours = {"z": m.encode(ref["obs"]), "z_next": m.next(ref["z"], ref["action"]),
                "reward_logits": m.reward(ref["z"], ref["action"]),
                "reward": m.two_hot.decode(m.reward(ref["z"], ref["action"])),
                "pi_mean": info["mean"], "pi_log_std": info["log_std"], "pi_action": action,
                "q_logits": m.Q(ref["z"], ref["action"]), "target_q_logits": m.Q(ref["z"], ref["action"], target=True)}
        ours["q_values"], ours["target_q_values"] = m.two_hot.decode(ours["q_logits"]), m.two_hot.decode(
            ours["target_q_logits"])
    for key, value in ours.items():
        assert value.shape == ref[key].shape, key
        # torch's fp32 tolerances: matmul kernels differ by a few ulps between CPUs (AVX2, AVX-512), and log_std's
        # affine map from tanh onto [log_std_min, log_std_max] scales that by 6 (1.0e-5 measured on an AVX-512 Xeon)
        torch.testing.assert_close(value, ref[key], rtol=1.3e-6, atol=1e-5, msg=key)
    assert m.termination_head is None and not ref["termination"].any()


# ---------------------------------------------------------------- official-layout state dicts, built by hand
def _mlp_keys(prefix: str, dims: list[int], normed_out: bool, gen, lead=()) -> dict:
    """The official layers.mlp keys: NormedLinear i -> `i.weight, i.bias, i.ln.weight, i.ln.bias`, the last layer
    plain Linear (or NormedLinear with an activation). `lead`: the Q ensemble's stacked (num_q,) dim."""
    state = {}
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        state[f"{prefix}{i}.weight"] = 0.3 * torch.randn(*lead, d_out, d_in, generator=gen)
        state[f"{prefix}{i}.bias"] = 0.1 * torch.randn(*lead, d_out, generator=gen)
        if i < len(dims) - 2 or normed_out:
            state[f"{prefix}{i}.ln.weight"] = 1 + 0.1 * torch.randn(*lead, d_out, generator=gen)
            state[f"{prefix}{i}.ln.bias"] = 0.1 * torch.randn(*lead, d_out, generator=gen)
    return state


def _official_state(obs, act, enc=24, mlp=32, latent=16, num_q=3, bins=11, episodic=False, action_dims=(),
                    task_dim=0, seed=0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    state = {"log_std_min": torch.tensor(-5), "log_std_dif": torch.tensor(6)}  # log_std in [-5, 1]
    state |= _mlp_keys("_encoder.state.", [obs + task_dim, enc, latent], True, gen)
    state |= _mlp_keys("_dynamics.", [latent + task_dim + act, mlp, mlp, latent], True, gen)
    state |= _mlp_keys("_reward.", [latent + task_dim + act, mlp, mlp, bins], False, gen)
    if episodic:
        state |= _mlp_keys("_termination.", [latent + task_dim, mlp, mlp, 1], False, gen)
    state |= _mlp_keys("_pi.", [latent + task_dim, mlp, mlp, 2 * act], False, gen)
    for prefix in ("_Qs.params.", "_target_Qs_params."):
        state |= _mlp_keys(prefix, [latent + task_dim + act, mlp, mlp, bins], False, gen, lead=(num_q,))
        state[prefix + "__batch_size"], state[prefix + "__device"] = torch.Size([num_q]), None
    state |= {k.replace("_Qs.params.", "_detach_Qs_params."): v for k, v in state.items() if k.startswith("_Qs.")}
    if action_dims:
        state["_task_emb.weight"] = 0.1 * torch.randn(len(action_dims), task_dim, generator=gen)  # norms < 1
        state["_action_masks"] = (torch.arange(act) < torch.tensor(action_dims).unsqueeze(1)).float()
    return state


def _forward(state, prefix, x, member=None, out_act=None):
    """The official mlp on `x`, written from the key names alone (F.mish, F.layer_norm; SimNorm by `out_act`)."""
    n = len([k for k in state if k.startswith(prefix) and k.endswith(".bias") and ".ln." not in k])
    pick = (lambda t: t) if member is None else (lambda t: t[member])
    for i in range(n):
        x = F.linear(x, pick(state[f"{prefix}{i}.weight"]), pick(state[f"{prefix}{i}.bias"]))
        if f"{prefix}{i}.ln.weight" in state:
            ln_weight, ln_bias = pick(state[f"{prefix}{i}.ln.weight"]), pick(state[f"{prefix}{i}.ln.bias"])
            x = F.layer_norm(x, x.shape[-1:], ln_weight, ln_bias)
            x = out_act(x) if i == n - 1 else F.mish(x)
    return x


def _simnorm(x):
    return x.unflatten(-1, (-1, 8)).softmax(-1).flatten(-2)  # (..., latent) in groups of 8


def _check_mapping(state, model, obs, action, noise, task=None):
    """Every verb of our converted model against `_forward` on the official weights (for task id `task`)."""
    emb = None if task is None else state["_task_emb.weight"][task]
    mask = None if task is None else state["_action_masks"][task]
    cat = (lambda x: x) if emb is None else (lambda x: torch.cat([x, emb.expand(len(x), -1)], -1))
    m = model.eval()
    task = None if task is None else torch.tensor(task)
    with torch.no_grad():
        z = _forward(state, "_encoder.state.", cat(obs), out_act=_simnorm)
        torch.testing.assert_close(m.encode(obs, task), z, rtol=0, atol=1e-5)
        za = torch.cat([cat(z), action], -1)
        torch.testing.assert_close(m.next(z, action, task), _forward(state, "_dynamics.", za, out_act=_simnorm),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(m.reward(z, action, task), _forward(state, "_reward.", za), rtol=0, atol=1e-5)
        for prefix, target in (("_Qs.params.", False), ("_target_Qs_params.", True)):
            expected = torch.stack([_forward(state, prefix, za, member=q) for q in range(model.num_q)])
            torch.testing.assert_close(m.Q(z, action, target=target, task=task), expected, rtol=0, atol=1e-5)
        if "_termination.0.weight" in state:
            torch.testing.assert_close(m.termination(z, task), _forward(state, "_termination.", cat(z)),
                                       rtol=0, atol=1e-5)
        mean, log_std = _forward(state, "_pi.", cat(z)).chunk(2, -1)
        log_std = -5 + 0.5 * 6 * (torch.tanh(log_std) + 1)
        noise.eps = torch.linspace(-2, 2, mean.numel()).view_as(mean)
        eps = noise.eps if mask is None else noise.eps * mask
        mean = mean if mask is None else mean * mask
        action_pi, info = m.pi(z, task)
        torch.testing.assert_close(info["mean"], torch.tanh(mean), rtol=0, atol=1e-5)
        torch.testing.assert_close(action_pi, torch.tanh(mean + eps * log_std.exp()), rtol=0, atol=1e-5)


def _save(tmp_path, state, name="official.pt"):
    path = tmp_path / name
    torch.save({"model": state}, path)
    return path


def test_episodic_official_layout_maps_the_termination_head(tmp_path, noise):
    state = _official_state(obs=5, act=1, episodic=True)  # cartpole-swingup's shapes, sizes of no preset
    agent, cfg, spec = load_agent(_save(tmp_path, state), task="cartpole-swingup")
    assert cfg.episodic is True and spec.episodic and agent.model.termination_head is not None
    assert cfg.model_size is None and (cfg.enc_dim, cfg.mlp_dim, cfg.latent_dim, cfg.num_q, cfg.num_bins) == (
        24, 32, 16, 3, 11)
    assert (cfg.log_std_min, cfg.log_std_max) == (-5, 1)
    gen = torch.Generator().manual_seed(1)
    _check_mapping(state, agent.model, torch.randn(7, 5, generator=gen), torch.rand(7, 1, generator=gen) * 2 - 1,
                   noise)


def test_multitask_official_checkpoint_maps_embedding_and_masks(tmp_path, noise):
    # reacher-easy: 6 obs, 2 actions; cartpole-balance: 5 obs (padded to 6), 1 action (padded to 2)
    state = _official_state(obs=6, act=2, action_dims=(2, 1), task_dim=8)
    path = _save(tmp_path, state)
    agent, cfg, spec = load_agent(path, task=["reacher-easy", "cartpole-balance"])
    assert cfg.task_dim == 8 and spec.tasks == ("reacher-easy", "cartpole-balance")
    gen = torch.Generator().manual_seed(2)
    for task in (0, 1):  # cartpole-balance's second action dim is padding: masked in pi
        _check_mapping(state, agent.model, torch.randn(7, 6, generator=gen), torch.rand(7, 2, generator=gen) * 2 - 1,
                       noise, task)
    with pytest.raises(checkpoint.CheckpointError, match=r"3 task\(s\), but the official checkpoint has a task "
                                                         r"embedding _task_emb.weight \(2, 8\) for 2 tasks"):
        load_agent(path, task=["reacher-easy", "cartpole-balance", "pendulum-swingup"])
    with pytest.raises(checkpoint.CheckpointError, match="1 task"):
        load_agent(path, task="reacher-easy")
    with pytest.raises(checkpoint.CheckpointError, match="_action_masks"):  # another order: other action dims
        load_agent(path, task=["cartpole-balance", "reacher-easy"])


def test_older_official_layout_converts_like_the_current_one(tmp_path):
    """The Q ensembles before the TensorDict layout: `_Qs.params.N` / `_target_Qs.params.N`, N = 4 * layer + field
    (weight, bias, ln.weight, ln.bias); no detached copy, no log_std buffers."""
    state = _official_state(obs=5, act=1)
    old = {k: v for k, v in state.items() if not k.startswith(("_Qs.", "_target_Qs_", "_detach_", "log_std"))}
    fields = ["weight", "bias", "ln.weight", "ln.bias"]
    for new_prefix, old_prefix in (("_Qs.params.", "_Qs.params."), ("_target_Qs_params.", "_target_Qs.params.")):
        for k, v in state.items():
            if k.startswith(new_prefix) and "__" not in k:
                layer, field = k[len(new_prefix):].split(".", 1)
                old[f"{old_prefix}{4 * int(layer) + fields.index(field)}"] = v
    current, _, _ = load_agent(_save(tmp_path, state), task="cartpole-swingup")
    older, _, _ = load_agent(_save(tmp_path, old, "old.pt"), task="cartpole-swingup")
    for key, value in current.model.state_dict().items():
        if key.startswith(("q_ensemble", "target_q")):
            assert torch.equal(older.model.state_dict()[key], value), key


def test_inconsistent_shapes_and_wrong_task_are_clear_errors(tmp_path):
    state = _official_state(obs=5, act=1)
    bad = dict(state, **{"_reward.0.weight": torch.zeros(32, 20)})  # the dynamics say latent 16 + 1 action
    with pytest.raises(checkpoint.CheckpointError, match=r"_reward.0.weight: the checkpoint's shape is \(32, 20\).*"
                                                         r"need \(32, 17\)"):
        load_agent(_save(tmp_path, bad), task="cartpole-swingup")
    with pytest.raises(checkpoint.CheckpointError, match="task=cheetah-run has 17 observation and 6 action dims.*"
                                                         "encoder takes 5"):
        load_agent(_save(tmp_path, state), task="cheetah-run")
    with pytest.raises(checkpoint.CheckpointError, match="records no task: give task="):
        load_agent(_save(tmp_path, state))
    pixels = dict(state, **{"_encoder.rgb.2.weight": torch.zeros(32, 3, 7, 7)})
    with pytest.raises(checkpoint.CheckpointError, match=r"_encoder.rgb.\*: only the official state encoder"):
        load_agent(_save(tmp_path, pixels), task="cartpole-swingup")


def test_convert_and_info_commands(tmp_path, capsys):
    src = _official_file(1)
    official.main(["info", str(src)])
    out = capsys.readouterr().out
    assert "current layout" in out and "model_size 1 (enc_dim 256, mlp_dim 384, latent_dim 128, num_enc_layers 2, " \
                                      "num_q 2), 101 bins, obs 17, actions 6, not episodic" in out
    dst = tmp_path / "ours.pt"
    official.main(["convert", str(src), str(dst), "task=cheetah-run"])
    payload = checkpoint.load(dst)  # our format now: no task needed
    assert payload["format_version"] == checkpoint.FORMAT_VERSION and payload["trainer"]["trainer"] == "official"
    weights = torch.load(src, weights_only=False)["model"]
    assert torch.equal(payload["agent"]["model"]["encoder.0.weight"], weights["_encoder.state.0.weight"])
    assert torch.equal(payload["agent"]["model"]["q_ensemble.hidden.1.weight"],
                       weights["_Qs.params.1.weight"].transpose(1, 2))
    with pytest.raises(SystemExit, match="convert needs the task"):
        official.main(["convert", str(src), str(dst), "seed=2"])


def test_train_fine_tunes_an_official_checkpoint(tmp_path):
    """train.py checkpoint=OFFICIAL.pt reads the sizes off the weights (overriding model_size), starts from them and
    trains on (an episodic official-layout checkpoint for gym/InvertedPendulum-v5: short episodes)."""
    state = _official_state(obs=4, act=1, episodic=True)
    path = _save(tmp_path, state)
    planner = ["num_samples=32", "num_elites=4", "num_pi_trajs=4", "iterations=1", "batch_size=16"]
    proc = run_train([f"checkpoint={path}", "task=gym/InvertedPendulum-v5", "model_size=5", *planner, "steps=200",
                      "seed_steps=50", "eval_freq=100000", "eval_episodes=1", "checkpoint_freq=100000"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Official TD-MPC2 checkpoint" in proc.stdout and "no model_size preset (enc_dim 24, " in proc.stdout
    assert "Starting online training from the agent" in proc.stdout
    saved = torch.load(next((tmp_path / "runs").rglob("latest.pt")), weights_only=False)
    assert saved["config"]["latent_dim"] == 16 and saved["trainer"]["updates"] > 0
    trained = saved["agent"]["model"]["encoder.0.weight"]
    assert trained.shape == state["_encoder.state.0.weight"].shape
    assert 0 < (trained - state["_encoder.state.0.weight"]).abs().max() < 0.05  # fine-tuned, not re-initialised


def _evaluate(args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "threads=1", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def test_evaluate_an_official_checkpoint(tmp_path):
    # InvertedPendulum: an untrained agent's episodes end within a few dozen steps (cheap planning)
    ev = _evaluate([f"checkpoint={_save(tmp_path, _official_state(obs=4, act=1))}", "task=gym/InvertedPendulum-v5",
                    "eval_episodes=1"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "gym/InvertedPendulum-v5: return" in ev.stdout and "over 1 episodes" in ev.stdout
    missing_task = _evaluate([f"checkpoint={_official_file(1)}"], tmp_path)
    assert missing_task.returncode != 0 and "records no task: give task=" in missing_task.stderr


@pytest.mark.slow
def test_evaluate_the_official_cheetah_checkpoint(tmp_path):
    """The released-model command: 500 planning steps of the default planner (minutes on a shared CPU)."""
    ev = _evaluate([f"checkpoint={_official_file(1)}", "task=cheetah-run", "eval_episodes=1"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "cheetah-run: return" in ev.stdout and "over 1 episodes" in ev.stdout
