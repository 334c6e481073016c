"""precision=fp32|bf16|auto|bf16_emulated (common/precision.py): which ops run in bf16, the choice `auto` makes,
both agents under bf16, and checkpoints that do not depend on the precision."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict

from common import precision
from common.layers import mish
from common.precision import compute_context, resolve
from tests.conftest import TINY_TDMPC2, compose
from tests.test_dreamer import fake_batch, make_agent as make_dreamer

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _quiet_bf16_warning():
    """This suite's bf16 runs are tiny; the slow-kernel warning (tested below) would only be noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="precision=bf16 on")
        yield


def _hardware(monkeypatch, avx512_bf16: bool, amx: bool = False):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


def test_auto_picks_bf16_only_where_the_hardware_has_it(monkeypatch):
    _hardware(monkeypatch, avx512_bf16=False)
    assert resolve("auto", CPU) == "fp32"
    assert "no hardware bf16" in precision.describe("auto", CPU)
    _hardware(monkeypatch, avx512_bf16=True)
    assert resolve("auto", CPU) == "bf16"
    _hardware(monkeypatch, avx512_bf16=False, amx=True)
    assert resolve("auto", CPU) == "bf16"
    for capability, expected in [((7, 5), False), ((8, 0), True), ((9, 0), True)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert precision.fast_bf16(torch.device("cuda")) is expected


def test_explicit_bf16_without_hardware_warns_and_still_runs(monkeypatch):
    _hardware(monkeypatch, avx512_bf16=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="slow kernel"):
            resolve("bf16", CPU)
    _hardware(monkeypatch, avx512_bf16=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve("bf16", CPU) == "bf16"  # no warning where it is fast


@pytest.mark.parametrize("mode", ["bf16", "bf16_emulated"])
def test_products_round_their_operands_and_nothing_else_changes(mode):
    # 1 + 2^-10 is below bf16's resolution at 1 (2^-7): a bf16 product sees 1.0, an fp32 one does not
    x, w = torch.full((1, 4), 1 + 2 ** -10), torch.ones(3, 4)
    assert F.linear(x, w)[0, 0].item() == 4 * (1 + 2 ** -10)
    with compute_context(mode):
        y = F.linear(x, w)
        e = torch.exp(x)  # not a product: stays exact fp32
    assert y.dtype == torch.float32 and y[0, 0].item() == 4.0
    assert torch.equal(e, torch.exp(x))
    with compute_context("fp32"):
        assert F.linear(x, w)[0, 0].item() == 4 * (1 + 2 ** -10)


def test_emulated_bf16_matches_bf16_kernels():
    torch.manual_seed(0)
    layer, gru = torch.nn.Linear(64, 48), torch.nn.GRUCell(48, 32)
    x, h = torch.randn(10, 64), torch.randn(10, 32)
    outs = {}
    for mode in ("bf16", "bf16_emulated"):
        with compute_context(mode):
            outs[mode] = gru(layer(x), h)
    torch.testing.assert_close(outs["bf16"], outs["bf16_emulated"], rtol=1e-5, atol=1e-5)
    assert (outs["bf16"] - gru(layer(x), h)).abs().max() > 1e-4  # and both differ from fp32


def test_gradients_reach_the_fp32_master_weights():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    with compute_context("bf16"):
        layer(torch.randn(5, 8)).pow(2).sum().backward()
    assert layer.weight.dtype == torch.float32 and layer.weight.grad.dtype == torch.float32
    assert layer.weight.grad.abs().sum() > 0 and layer.bias.grad.abs().sum() > 0


def test_cached_weight_casts_follow_in_place_updates_and_grad_mode():
    layer, x = torch.nn.Linear(4, 1, bias=False), torch.ones(1, 4)
    torch.nn.init.ones_(layer.weight)
    with compute_context("bf16"):
        with torch.no_grad():
            assert layer(x).item() == 4.0
            layer.weight.add_(1.0)  # an optimiser step: the version counter changes
            assert layer(x).item() == 8.0
        layer(x).sum().backward()  # the cast made under no_grad must not be reused: gradients flow
    assert layer.weight.grad is not None and torch.equal(layer.weight.grad, x)


def test_mish_without_grad_equals_mish_with_grad():
    x = torch.tensor([-30.0, -5.0, -1.0, 0.0, 1.0, 5.0, 25.0])
    with torch.no_grad():
        fast = mish(x)
    torch.testing.assert_close(fast, mish(x.clone().requires_grad_()).detach())
    torch.testing.assert_close(fast, F.mish(x))
    assert fast[3] == 0 and abs(fast[4].item() - 0.8650984) < 1e-6


def _tdmpc2(prec, *overrides):
    from envs import make_env
    from src import make_agent
    torch.manual_seed(0)
    cfg = compose(["task=gym/Pendulum-v1", *TINY_TDMPC2, f"precision={prec}", *overrides])
    env, spec = make_env(cfg)
    return cfg, env, spec, make_agent(cfg, spec, CPU)


def _tdmpc2_batch(cfg, spec):
    L, B = cfg.horizon + 1, cfg.batch_size
    return TensorDict({"obs": torch.randn(L, B, *spec.obs_shape), "action": torch.rand(L, B, spec.action_dim) * 2 - 1,
                       "reward": torch.rand(L, B, 1), "terminated": torch.zeros(L, B, 1),
                       "is_first": torch.zeros(L, B, 1, dtype=torch.bool)}, batch_size=(L, B))


@pytest.mark.parametrize("mpc", [True, False])
def test_tdmpc2_bf16_act_and_update(mpc):
    cfg, env, spec, agent = _tdmpc2("bf16", f"mpc={str(mpc).lower()}")
    assert agent.precision == "bf16"
    for _ in range(2):
        metrics = agent.update(_tdmpc2_batch(cfg, spec))
    assert all(torch.isfinite(v).all() for v in metrics.values()), metrics
    obs = env.reset()
    for t in range(3):
        action = agent.act(obs, t0=t == 0)
        assert action.dtype == torch.float32 and action.shape == (spec.action_dim,) and action.abs().max() <= 1


@pytest.mark.parametrize("discrete", [False, True])
def test_dreamer_bf16_act_and_update(discrete):
    agent, spec = make_dreamer("precision=bf16", action_dim=3, discrete=discrete)
    metrics = agent.update(fake_batch(spec))
    assert all(torch.isfinite(v).all() for v in metrics.values()), metrics
    action = agent.act(torch.randn(5), t0=True)
    assert action.dtype == torch.float32 and action.shape == (3,)
    if discrete:
        assert action.sum() == 1 and set(action.tolist()) <= {0.0, 1.0}
    else:
        assert action.abs().max() <= 1


def test_bf16_checkpoint_loads_in_fp32_with_identical_weights(tmp_path):
    from common import checkpoint
    from src.policy import load_agent
    cfg, env, spec, agent = _tdmpc2("bf16")
    agent.update(_tdmpc2_batch(cfg, spec))
    path = tmp_path / "bf16.pt"
    checkpoint.save(path, cfg, spec, agent, {"step": 0})
    loaded, loaded_cfg, _ = load_agent(path, overrides={"precision": "fp32"})
    assert loaded.precision == "fp32" and loaded_cfg.precision == "fp32"
    saved, restored = agent.model.state_dict(), loaded.model.state_dict()
    assert all(v.dtype != torch.bfloat16 for v in restored.values())
    assert all(torch.equal(saved[k], restored[k]) for k in saved)
    assert load_agent(path)[0].precision == "bf16"  # by default the checkpoint's own precision


def test_precision_config_rules():
    from common.config import ConfigError
    with pytest.raises(ConfigError, match="precision='fp16': must be one of fp32, bf16, auto, bf16_emulated"):
        compose(["precision=fp16"])
    with pytest.raises(ConfigError, match="compile=true runs in fp32 only"):
        compose(["precision=bf16", "compile=true"])
    assert compose(["precision=fp32", "compile=true"]).precision == "fp32"
