"""Multi-discount auxiliary value heads: structure, targets, gradient flow, isolation from planning and the
policy, baseline equivalence, validation, checkpoints, snapshots and sweeps."""
import copy
import json
import subprocess
import sys
import warnings

import pytest
import torch

from common.buffer import Buffer
from common.config import ConfigError, validate_for_env
from envs import make_env
from src.heads.multi_gamma import MultiGammaHead
from tests.conftest import ROOT, TINY_TDMPC2, compose
from tests.test_tdmpc2 import _fill

ON = ["multi_gamma.enabled=true"]


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)


def _agent_and_buffer(tiny_tdmpc2, *overrides):
    cfg, env, spec, agent = tiny_tdmpc2(*overrides)
    buffer = Buffer(5000, agent.seq_len, agent.batch_size)
    torch.manual_seed(0)
    _fill(env, spec, buffer)
    return cfg, spec, agent, buffer


def test_heads_exist_only_with_auxiliary_discounts(tiny_tdmpc2):
    assert tiny_tdmpc2()[3].model.multi_gamma_head is None
    with pytest.warns(UserWarning, match="single discount"):
        _, _, _, agent = tiny_tdmpc2(*ON, "multi_gamma.gammas=[primary]")
    assert agent.model.multi_gamma_head is None
    _, _, spec, agent = tiny_tdmpc2(*ON)
    assert agent.discounts == [pytest.approx(0.975), 0.97, 0.995]  # Pendulum-v1: 200 steps -> 0.975
    assert agent.model.multi_gamma_head.num_aux == 2
    assert "multi_gamma_heads" in agent.parameter_counts()


def test_head_shapes_and_parameter_budget():
    z = torch.randn(3, 5, 512)
    joint, separate = (MultiGammaHead(512, [0.9, 0.95], 101, kind, loss_weight=1.0) for kind in ("joint", "separate"))
    assert joint(z).shape == separate(z).shape == (2, 3, 5, 101)
    per_discount = 512 * 101 + 101  # the seed's budget: about 52k per auxiliary discount at latent 512
    assert sum(p.numel() for p in joint.parameters()) == 2 * per_discount
    assert sum(p.numel() for p in separate.parameters()) == 2 * per_discount
    # joint: head i reads rows i*101 .. (i+1)*101 of the shared output
    with torch.no_grad():
        joint.joint.bias.copy_(torch.arange(202.0))
    out = joint(torch.zeros(1, 512))
    assert torch.equal(out[1, 0], torch.arange(101.0, 202.0))


def test_targets_are_one_step_td_with_primary_bootstrap(tiny_tdmpc2):
    cfg, spec, agent, buffer = _agent_and_buffer(tiny_tdmpc2, *ON)
    reward = torch.tensor([[[1.0]], [[2.0]]])  # (T=2, B=1, 1)
    terminated = torch.tensor([[[0.0]], [[1.0]]])
    bootstrap = torch.tensor([[[10.0]], [[20.0]]])
    feats = torch.zeros(2, 1, cfg.mlp_dim)  # the heads read the Q ensemble's hidden layer
    targets, logits, ce = agent.model.multi_gamma_head.terms(feats, reward, terminated, bootstrap,
                                                         agent.model.two_hot)
    expected = torch.tensor([[1 + 0.97 * 10, 2.0], [1 + 0.995 * 10, 2.0]]).view(2, 2, 1, 1)
    assert torch.allclose(targets, expected)
    assert logits.shape == (2, 2, 1, cfg.num_bins) and ce.shape == (2, 2, 1, 1)


@pytest.mark.parametrize("grad_to_q", [True, False])
def test_auxiliary_loss_reaches_encoder_and_dynamics_but_not_policy(tiny_tdmpc2, grad_to_q):
    """Seed 001 section 4.1: encoder, dynamics and (grad_to_q=true, the default) the Q ensemble, never the
    policy prior or the target Q."""
    cfg, spec, agent, buffer = _agent_and_buffer(tiny_tdmpc2, *ON, f"multi_gamma.grad_to_q={grad_to_q}")
    _randomize(agent.model.multi_gamma_head)  # zero-initialised heads pass no gradient to the latent
    batch = buffer.sample()
    with torch.no_grad():
        next_z = agent.model.encode(batch["obs"][1:])
        bootstrap = agent.model.Q(next_z, agent.model.pi(next_z)[0], return_type="min", target=True)
    zs = agent._rollout(batch["obs"][0], batch["action"][1:])
    _, q_feats = agent.model.Q_with_features(zs[:-1], batch["action"][1:])  # the update's ensemble forward
    feats = agent._multi_gamma_input(zs[:-1], batch["action"][1:], q_feats)
    loss, metrics = agent.model.multi_gamma_head.loss(feats, batch["reward"][1:], batch["terminated"][1:],
                                                  bootstrap, agent.model.two_hot, agent._rho)
    loss.backward()
    m = agent.model
    reached = (m.encoder, m.dynamics, m.multi_gamma_head) + ((m.q_ensemble,) if grad_to_q else ())
    for module in reached:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    for module in (m.policy_prior, m.target_q) + (() if grad_to_q else (m.q_ensemble,)):
        assert all(p.grad is None for p in module.parameters())
    assert set(metrics) >= {"aux_value_ce/mean", "aux_value_ce/g0.97", "aux_value_ce/g0.995",
                            "aux_value_pred_mean/g0.97", "aux_value_pred_std/g0.995"}


def test_planner_and_policy_loss_never_read_the_heads(tiny_tdmpc2):
    cfg, spec, agent, buffer = _agent_and_buffer(tiny_tdmpc2, *ON)
    other = copy.deepcopy(agent)
    _randomize(other.model.multi_gamma_head)
    obs = buffer.sample()["obs"][0, 0]
    for a in (agent, other):
        torch.manual_seed(7)
        a.actions = torch.stack([a.act(obs, t0=t == 0) for t in range(3)])
    assert torch.equal(agent.actions, other.actions)
    zs = torch.randn(cfg.horizon + 1, 8, cfg.latent_dim).softmax(-1)
    losses = []
    for a in (agent, other):
        torch.manual_seed(3)
        losses.append(a._update_pi(zs)[0])
    assert torch.equal(losses[0], losses[1])


def _losses(tiny_tdmpc2, *overrides, updates=200):
    cfg, spec, agent, buffer = _agent_and_buffer(tiny_tdmpc2, *overrides)
    torch.manual_seed(11)
    history = [agent.update(buffer.sample()) for _ in range(updates)]
    return {k: torch.stack([h[k] for h in history]) for k in history[0]}


def test_disabled_or_single_discount_matches_baseline_exactly(tiny_tdmpc2):
    baseline = _losses(tiny_tdmpc2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = _losses(tiny_tdmpc2, *ON, "multi_gamma.gammas=[primary]")
    assert set(single) == set(baseline) and not any(k.startswith("aux_") for k in baseline)
    for k in baseline:
        assert torch.equal(baseline[k], single[k]), k


def test_auxiliary_loss_falls_when_enabled(tiny_tdmpc2):
    history = _losses(tiny_tdmpc2, *ON, updates=150)
    ce = history["aux_value_ce/mean"]
    assert ce[-20:].mean() < ce[:5].mean() - 0.1  # measured: 2.69 -> 2.50 after 150 updates


@pytest.mark.parametrize("overrides,needle", [
    (["multi_gamma.gammas=[]"], "non-empty list"),
    (["multi_gamma.gammas=[primary,0.9,0.91,0.92,0.93,0.94,0.95]"], "at most 6 discounts"),
    (["multi_gamma.gammas=[primary,1.2]"], "multi_gamma.gammas[1]=1.2: auxiliary discounts must be numbers in (0, 1)"),
    (["multi_gamma.gammas=[primary,0.97,0.97]"], "duplicate discounts"),
    (["multi_gamma.head=shared"], "multi_gamma.head='shared': must be one of joint, separate"),
    (["multi_gamma.loss_weight=-1"], "multi_gamma.loss_weight=-1"),
])
def test_validation_errors(overrides, needle):
    with pytest.raises(ConfigError) as e:
        compose([*ON, *overrides])
    assert needle in str(e.value)


def test_numeric_primary_must_match_computed_discount():
    cfg = compose(["task=gym/Pendulum-v1", *ON, "multi_gamma.gammas=[0.99,0.97]"])
    _, spec = make_env(cfg)
    with pytest.raises(ConfigError) as e:
        validate_for_env(cfg, spec)
    assert "multi_gamma.gammas[0]=0.99" in str(e.value) and "0.975000" in str(e.value)
    ok = compose(["task=gym/Pendulum-v1", *ON, "multi_gamma.gammas=[0.975,0.97]"])
    validate_for_env(ok, spec)


def test_checkpoint_carries_heads_and_rejects_other_discounts(tiny_tdmpc2):
    _, _, _, agent = tiny_tdmpc2(*ON)
    state = agent.state_dict()
    assert state["multi_gamma"] == {"discounts": [0.97, 0.995], "head": "joint"}
    assert any(k.startswith("multi_gamma_head.") for k in state["model"])
    _, _, _, same = tiny_tdmpc2(*ON)
    same.load_state_dict(state)
    _, _, _, other = tiny_tdmpc2(*ON, "multi_gamma.gammas=[primary,0.9]")
    with pytest.raises(ValueError, match=r"auxiliary discounts \[0.97, 0.995\].*\[0.9\]"):
        other.load_state_dict(state)
    baseline_state = tiny_tdmpc2()[3].state_dict()
    _, _, _, off = tiny_tdmpc2()
    off.load_state_dict(baseline_state)  # no heads, feature off
    with pytest.raises(ValueError):
        same.load_state_dict(baseline_state)


def test_debug_snapshot_is_bounded_and_complete(tiny_tdmpc2):
    cfg, spec, agent, buffer = _agent_and_buffer(tiny_tdmpc2, *ON)
    records = agent.multi_gamma_snapshot(buffer.sample(), num_examples=3)
    assert len(records) == 2 * 3  # discounts x examples
    r = records[0]
    assert set(r) == {"gamma", "example", "target", "prediction", "abs_error", "bootstrap", "top2_bins",
                      "top2_probs", "ce_per_step"}
    assert len(r["target"]) == cfg.horizon and len(r["top2_bins"][0]) == 2
    json.dumps(records)


def test_ablation_configs():
    expected = {"A0": (False, None, None, None), "A1": (True, 3, "joint", 0.5), "A2": (True, 3, "separate", 0.5),
                "A3": (True, 6, "joint", 0.5), "A4": (True, 3, "joint", 0.25)}
    for name, (enabled, n, head, weight) in expected.items():
        mg = compose([f"ablation={name}"]).multi_gamma
        assert mg.enabled == enabled, name
        if enabled:
            assert (len(mg.gammas), mg.head, mg.loss_weight) == (n, head, weight), name


@pytest.mark.heavy
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_multirun_sweep_over_discount_sets(tmp_path, launcher):
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra/launcher={launcher}", "task=gym/Pendulum-v1",
           *TINY_TDMPC2, "threads=1", "logger.progress=false", "steps=200", "seed_steps=1000", "eval_episodes=1",
           "multi_gamma.enabled=true", "multi_gamma.gammas=[primary,0.97],[primary,0.9,0.99]",
           f"hydra.sweep.dir={tmp_path}/sweep"]
    if launcher == "submitit_local":
        cmd.append("hydra.launcher.timeout_min=10")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if (p / "metrics" / "eval.csv").exists())
    assert len(jobs) == 2 and jobs[0] != jobs[1]
    gammas = sorted(json.loads((j / "parameters.json").read_text())["multi_gamma_heads"] for j in jobs)
    assert gammas[1] == 2 * gammas[0]  # one versus two auxiliary heads
    # each job's reference-format curve has a file of its own (they used to overwrite one another)
    curves = sorted((tmp_path / "results" / "runs" / "gym" / "Pendulum-v1").glob("*.csv"))
    assert len(curves) == 2, curves
    assert all(c.name.startswith("tdmpc2-default-seed1-") for c in curves)
    assert all(len(c.read_text().splitlines()) >= 2 for c in curves)  # header and the evaluations
    for job in jobs:
        assert json.loads((job / "source.json").read_text()).keys() == {"commit", "dirty"}
        assert json.loads((job / "hardware.json").read_text())["precision"] == "fp32"  # the default, resolved
