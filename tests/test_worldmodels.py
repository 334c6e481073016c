"""World Models agent (agent=worldmodels): VQ, memory gradients, GAE, planning, A2C signs, config rules."""
import pytest
import torch

import common.config
from common.config import ConfigError
from tests.conftest import compose

WM = ["agent=worldmodels", "task=gym/CartPole-v1", "memory_dim=16", "memory_layers=1",
      "memory_heads=2", "window=4", "controller_dims=[16,16]", "enc_dim=16", "num_codes=2", "code_dim=4",
      "n_steps=4", "num_envs=2", "planning_horizon=2"]


def _agent(*overrides):
    from envs import make_env
    from src import make_agent
    torch.manual_seed(0)
    cfg = compose([*WM, *overrides])
    env, spec = make_env(cfg)
    common.config.validate_for_env(cfg, spec)
    return cfg, spec, make_agent(cfg, spec, torch.device("cpu"))


def test_vq_straight_through_and_losses_hand_case():
    from src.worldmodels.vision import VectorQuantizer
    vq = VectorQuantizer(2, 2)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    z_e = torch.tensor([[0.2, 0.0], [0.9, 1.3]], requires_grad=True)
    z_q, codebook, commitment, idx = vq(z_e)
    assert idx.tolist() == [0, 1]
    assert torch.allclose(z_q, vq.codebook.weight)  # forward value: the codes
    expected = (0.2 ** 2 + 0.1 ** 2 + 0.3 ** 2) / 4  # mean squared distance to the chosen codes
    assert codebook.item() == pytest.approx(expected) and commitment.item() == pytest.approx(expected)
    (z_q * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    assert torch.allclose(z_e.grad, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # straight through, unchanged
    z_e.grad = None
    codebook.backward()
    assert z_e.grad is None or z_e.grad.abs().sum() == 0  # the codebook loss moves the codebook only
    assert vq.codebook.weight.grad.abs().sum() > 0


def test_dead_codes_restart_onto_encoder_outputs_hand_case():
    from src.worldmodels.vision import VectorQuantizer
    vq = VectorQuantizer(3, 2)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    z_e = torch.tensor([[0.1, 0.0], [0.9, 1.0]])
    _, _, _, idx = vq(z_e)
    assert vq.restart_dead(z_e, idx) == 1  # code 2 is nobody's nearest
    codes = vq.codebook.weight
    assert torch.equal(codes[:2], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # the used codes stay
    assert any(torch.equal(codes[2], row) for row in z_e)  # the dead one sits on an encoder output


def test_memory_gradient_reaches_current_entry_not_history():
    cfg, spec, agent = _agent()
    mem = agent.memory
    history = torch.randn(3, mem.window - 1, mem.token_dim, requires_grad=True)
    token = torch.randn(3, mem.token_dim, requires_grad=True)
    h = mem(history, torch.full((3,), mem.window - 1), token)  # (3, dim)
    # a random readout, not h.sum(): the encoder ends in a LayerNorm, whose outputs' sum (and sum of squares)
    # is constant, so their gradient is zero up to rounding (exactly zero on some CPUs)
    (h * torch.randn(h.shape[-1])).sum().backward()
    assert history.grad is None
    assert token.grad is not None and token.grad.abs().sum() > 0


def test_memory_padding_is_ignored():
    cfg, spec, agent = _agent()
    mem = agent.memory
    token = torch.randn(1, mem.token_dim)
    empty = mem(torch.zeros(1, mem.window - 1, mem.token_dim), torch.zeros(1, dtype=torch.long), token)
    junk = mem(torch.randn(1, mem.window - 1, mem.token_dim), torch.zeros(1, dtype=torch.long), token)
    assert torch.allclose(empty, junk, atol=1e-5) and torch.isfinite(empty).all()


def test_gae_hand_case_with_episode_end_inside():
    from src.worldmodels.agent import gae
    g, lam = 0.9, 0.5
    reward = torch.tensor([[1.0], [2.0], [3.0]])
    value = torch.tensor([[0.5], [1.0], [2.0]])
    next_value = torch.tensor([[1.0], [9.0], [4.0]])  # step 1 terminated: its next value must not count
    terminated = torch.tensor([[0.0], [1.0], [0.0]])
    done = terminated.clone()
    adv, ret = gae(reward, value, next_value, terminated, done, g, lam)
    d2 = 3 + g * 4 - 2
    d1 = 2 - 1.0
    d0 = 1 + g * 1.0 - 0.5
    a0 = d0 + g * lam * d1  # the recursion continues into step 1, stops at its end
    assert torch.allclose(adv.squeeze(), torch.tensor([a0, d1, d2]))
    assert torch.allclose(ret, adv + value)
    # truncation (done, not terminated) bootstraps from next_value but still stops the recursion
    adv_t, _ = gae(reward, value, next_value, torch.zeros_like(done), done, g, lam)
    assert adv_t[1].item() == pytest.approx(2 + g * 9 - 1.0)


def test_discrete_planning_picks_best_action_of_known_toy_model():
    from src.worldmodels.controller import planned_returns
    cfg, spec, agent = _agent()
    mem = agent.memory
    rewards = torch.tensor([0.2, 1.0])  # action 1 pays more
    mem.predict = lambda h, a: (torch.zeros(h.shape[0], agent.vision.z_dim), a @ rewards)
    b = 3
    history, length = mem.initial(b, "cpu")
    token = torch.zeros(b, mem.token_dim)
    h = mem(history, length, token)
    actions = torch.eye(2).expand(b, -1, -1)
    scores = planned_returns(mem, agent.controller, history, length, token, h, actions, 3, 0.5, False)
    assert torch.allclose(scores, (rewards * (1 + 0.5 + 0.25)).expand(b, -1))
    assert (scores.argmax(-1) == 1).all()


T, N = 4, 2  # the hand-made rollouts: 4 steps of 2 envs


def _one_state_rollout(agent, reward_scale: float = 1.0):
    """A (T, N) rollout of one-step episodes from one state: action 0 rewarded (`reward_scale`), action 1 not."""
    from tensordict import TensorDict
    torch.manual_seed(1)
    obs = torch.randn(4).expand(T, N, 4).clone()  # one state: the tests are about signs and scales
    history, length = agent.memory.initial(T * N, "cpu")[0], torch.zeros(T * N, dtype=torch.long)
    action = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1]).view(T, 1).expand(T, N), 2).float()
    reward = reward_scale * torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    return TensorDict({"obs": obs, "history": history.unflatten(0, (T, N)), "length": length.view(T, N),
                       "prev_action": torch.zeros(T, N, 2), "action": action, "plan": torch.zeros(T, N, 2),
                       "reward": reward,
                       "value": torch.zeros(T, N), "next_value": torch.zeros(T, N),
                       "terminated": torch.ones(T, N, dtype=torch.bool), "done": torch.ones(T, N, dtype=torch.bool),
                       "next_obs": obs}, batch_size=[T, N])


def test_discrete_log_prob_is_the_behaviour_mixture_hand_case():
    import math
    from types import SimpleNamespace
    from src.worldmodels.controller import Controller
    c = Controller(SimpleNamespace(controller_dims=[4]), 2, 2, discrete=True)
    c.policy = torch.nn.Identity()  # the features are the logits: pi = (0.25, 0.75)
    logits = torch.tensor([[0.0, math.log(3.0)]] * 2)
    action = torch.eye(2)  # row 0 took action 0, row 1 action 1
    plan = torch.tensor([[0.3, 0.0]] * 2)  # planning (weight 0.3) chose action 0
    log_prob, entropy = c.log_prob_entropy(logits, action, plan)
    assert torch.allclose(log_prob.exp(), torch.tensor([0.7 * 0.25 + 0.3, 0.7 * 0.75]))
    assert torch.allclose(c.log_prob_entropy(logits, action)[0].exp(), torch.tensor([0.25, 0.75]))
    assert entropy[0].item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_positive_advantage_raises_log_prob():
    cfg, spec, agent = _agent("planning=false", "vision_coef=0", "memory_coef=0", "reward_coef=0", "entropy_coef=0",
                              "value_coef=0", "restart_dead_codes=false")  # only the policy loss moves anything
    rollout = _one_state_rollout(agent)  # action 0 at the rewarded steps (positive advantage), 1 at the others
    obs, action = rollout["obs"], rollout["action"]
    history, length = rollout["history"].flatten(0, 1), rollout["length"].flatten(0, 1)

    def log_prob():
        with torch.no_grad():
            z = agent.vision.encode(obs.flatten(0, 1))
            h = agent.memory(history, length, torch.cat([z, torch.zeros(T * N, 2)], -1))
            return agent.controller.log_prob_entropy(torch.cat([z, h], -1), action.flatten(0, 1))[0].view(T, N)
    before = log_prob()
    agent.update(rollout)
    change = log_prob() - before
    assert (change[0::2] > 0).all() and (change[1::2] < 0).all(), change


@pytest.mark.parametrize("value_loss, bounded", [("huber", True), ("mse", False)])
def test_critic_gradient_with_return_scale(value_loss, bounded):
    """The critic's gradient under huber stays put when the returns are 100x larger (so it cannot crowd the
    policy out of the one clipped norm); under mse it grows with them."""
    norms = []
    for scale in (1.0, 100.0):
        cfg, spec, agent = _agent("planning=false", "vision_coef=0", "memory_coef=0", "reward_coef=0",
                                  "entropy_coef=0", "value_coef=1", f"value_loss={value_loss}")
        norms.append(float(agent.update(_one_state_rollout(agent, scale))["controller_grad_norm"]))
    assert (norms[1] < 2 * norms[0]) if bounded else (norms[1] > 20 * norms[0]), norms


def test_vector_env_rollout_shapes():
    from envs import make_env
    from trainer.base import Progress
    from trainer.onpolicy_trainer import OnPolicyTrainer
    cfg, spec, agent = _agent()
    env, _ = make_env(cfg)
    trainer = OnPolicyTrainer(cfg, env, spec, agent, None, None, "/tmp")
    trainer._reset()
    rollout, _ = trainer.rollout(Progress(1, 0, enabled=False))
    assert rollout.batch_size == torch.Size([4, 2])
    assert rollout["obs"].shape == (4, 2, 4) and rollout["action"].shape == (4, 2, 2)
    assert rollout["history"].shape == (4, 2, 3, agent.memory.token_dim)
    assert rollout["next_value"].shape == (4, 2)
    metrics = agent.update(rollout)
    assert all(torch.isfinite(v) for v in metrics.values())
    trainer.envs.close()


def test_onpolicy_resume_restores_finished_and_env_rng_and_guards_updates(tmp_path):
    """The on-policy trainer loads what every trainer's checkpoint carries (whether the run finished, the
    evaluation env's RNG), and its updates go through on_nonfinite's guard."""
    from envs import make_env
    from common.logger import Logger
    from trainer.base import NonFiniteError
    from trainer.onpolicy_trainer import OnPolicyTrainer
    cfg, spec, agent = _agent()
    env, _ = make_env(cfg)
    trainer = OnPolicyTrainer(cfg, env, spec, agent, None, None, tmp_path)
    env.reset()
    saved = {**trainer.state(), "step": cfg.steps, "finished": True, "env": env.rng_state()}
    expected = env.rand_act()
    env.rand_act()
    trainer.load_state(saved)
    assert trainer.finished and torch.equal(env.rand_act(), expected)
    trainer.envs.close()
    cfg, spec, agent = _agent("eval_episodes=1", "logger.progress=false")
    agent.update = lambda rollout: {"loss": torch.tensor(float("nan"))}  # on_nonfinite=stop, the default
    trainer = OnPolicyTrainer(cfg, env, spec, agent, None, Logger(tmp_path, cfg), tmp_path)
    with pytest.raises(NonFiniteError, match="non-finite loss=nan in update 1 at step 0"):
        trainer.train()
    assert (tmp_path / "diagnostic.pt").exists()


def test_pixel_task_conv_encoder_shapes():
    from envs import make_env
    from src import make_agent
    cfg = compose(["agent=worldmodels", "task=gym/CarRacing-v3", "cnn_depth=4",
                   "memory_dim=16", "memory_heads=2", "memory_layers=1", "window=2", "num_action_samples=2",
                   "planning_horizon=1"])
    env, spec = make_env(cfg)
    assert spec.obs_shape == (3, 64, 64)
    common.config.validate_for_env(cfg, spec)
    agent = make_agent(cfg, spec, torch.device("cpu"))
    action = agent.act(env.reset(), t0=True)
    assert action.shape == (3,) and action.abs().max() <= 1
    with pytest.raises(ConfigError, match="encoder="):
        common.config.validate_for_env(compose([*cfg_overrides(cfg), "encoder=mlp"]), spec)
    env.close()


def cfg_overrides(cfg):
    return ["agent=worldmodels", f"task={cfg.task}"]


@pytest.mark.parametrize("overrides, message", [
    (["n_steps=0"], "n_steps=0: must be a positive integer"),
    (["planning=true", "reward_coef=0"], "planning=True: planning scores actions by predicted rewards"),
    (["memory_dim=30", "memory_heads=4"], "memory_dim=30: must be divisible"),
    (["phase=both"], "phase='both': must be one of"),
    (["value_loss=l1"], "value_loss='l1': must be one of"),
])
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        compose([*WM, *overrides])


def test_worldmodels_selects_onpolicy_trainer_and_rejects_others():
    assert compose(["agent=worldmodels", "task=gym/CartPole-v1"]).trainer == "onpolicy"  # from its agent file
    assert compose(["task=gym/CartPole-v1"]).trainer == "online"  # the other agents keep the root default
    with pytest.raises(ConfigError, match="trainer=.online.: agent=worldmodels trains with trainer=onpolicy"):
        compose(["agent=worldmodels", "trainer=online", "task=gym/CartPole-v1"])


def test_unknown_key_rejected():
    from hydra.errors import ConfigCompositionException
    with pytest.raises(ConfigCompositionException, match="planing"):
        compose([*WM, "planing=false"])


@pytest.mark.slow
def test_resume_and_pretraining_phases(tmp_path):
    import csv
    from tests.conftest import run_train
    base = [*WM, "eval_episodes=1", "eval_freq=100000", "checkpoint_freq=8"]
    first = run_train([*base, "steps=16", "exp_name=r"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_train([*base, "steps=32", "exp_name=r", "resume=true"], cwd=tmp_path)
    assert again.returncode == 0 and "Resumed from" in again.stdout and "at step 16" in again.stdout, again.stdout
    run = sorted((tmp_path / "runs/gym/CartPole-v1/worldmodels/r/seed1").iterdir())[-1]
    with open(run / "metrics/train.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [8, 16, 24, 32]  # continued, nothing repeated
    # pretraining: V, then M from V's checkpoint (agent only), then A2C from M's
    vision = run_train([*base, "steps=8", "phase=vision", "exp_name=v"], cwd=tmp_path)
    assert vision.returncode == 0, vision.stderr[-2000:]
    ckpt = next((tmp_path / "runs").rglob("v/seed1/*/checkpoints/latest.pt"))
    memory = run_train([*base, "steps=8", "phase=memory", "exp_name=m", f"checkpoint={ckpt}"], cwd=tmp_path)
    assert memory.returncode == 0 and "written by the onpolicy-vision trainer" in memory.stdout, memory.stdout
