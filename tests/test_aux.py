"""Hockey auxiliary task heads and auxiliary rewards in imagination: targets on hand-made episodes, the reward
formula on fixed predictions, gradient isolation (the behaviour step changes neither the heads nor the world
model; the heads learn from the world-model loss only), TD-MPC2's heads, decay, config, checkpoints, and one
tiny end-to-end hockey run."""
import csv
import math
import warnings

import pytest
import torch
from tensordict import TensorDict

from common.config import ConfigError
from envs.hockey.aux_targets import GOAL_HALF_HEIGHT, GOAL_LINE_X, WALL_Y, aux_targets
from common.spec import EnvSpec
from src.heads.aux_task import AUX_TARGET_KEYS, aux_reward, closeness
from tests.conftest import TINY_TDMPC2, compose, run_train

HOCKEY_SPEC = EnvSpec(obs_shape=(18,), action_dim=4, discrete=False, episode_length=251, action_repeat=1,
                      episodic=True, task="hockey")
AUX_ON = ["task=hockey", "aux_heads.enabled=true"]
TINY_DREAMER = ["agent=dreamer", "model_size=XS", "batch_size=4", "seq_len=8", "horizon=4"]


def puck_obs(px, py, vx, vy, steps=1):
    """Observations (steps, 18) with the puck at (px, py) moving at (vx, vy); everything else 0."""
    obs = torch.zeros(steps, 18)
    obs[:, 12:16] = torch.tensor([px, py, vx, vy])
    return obs


# ---------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize("winner,length,k,positives", [
    (1, 21, 5, list(range(15, 21))),   # the scoring step T=20 and the K=5 steps before it
    (1, 4, 15, [0, 1, 2, 3]),          # shorter than K: every step
    (-1, 21, 5, []),                   # conceded: no positive
    (0, 21, 5, []),                    # draw
])
def test_goal_within_k(winner, length, k, positives):
    goal = aux_targets(torch.zeros(length, 18), {"winner": winner}, k)["aux_goal"]
    assert goal.shape == (length, 1) and goal.dtype == torch.float32
    assert goal.squeeze(-1).nonzero().flatten().tolist() == positives


def test_puck_goal_distance():
    obs = torch.cat([puck_obs(0, 0, 0, 0), puck_obs(GOAL_LINE_X, 0, 0, 0), puck_obs(1.0, 3.0, 0, 0),
                     puck_obs(-4.0, -2.0, 0, 0)])
    dist = aux_targets(obs, {"winner": 0}, 15)["aux_puck_goal_dist"].squeeze(-1)
    expected = [245 / 60, 0.0, math.hypot(245 / 60 - 1, 3), math.hypot(245 / 60 + 4, 2)]
    assert torch.allclose(dist, torch.tensor(expected), atol=1e-5)


def test_shot_quality():
    bank_vy = 2 * WALL_Y * 10 / GOAL_LINE_X  # off the top wall, back onto y = 0 at the goal line
    cases = [  # (px, py, vx, vy) -> quality
        ((0, 0, 25, 0), 1.0),                      # straight at the goal centre, at full speed
        ((0, 0, 12.5, 0), 0.5),                    # half speed
        ((0, 0, 60, 0), 1.0),                      # speed factor capped at 1
        ((0, 0, -20, 0), 0.0),                     # away from the goal
        ((0, 0, 0, 20), 0.0),                      # sideways (v_x = 0)
        ((0, 0, 20, 20 * 1.5 * GOAL_HALF_HEIGHT / GOAL_LINE_X), None),  # crosses at 1.5 half heights: aim 0.5
        ((0, 0, 10, bank_vy), None),               # bank shot into the middle of the mouth: aim 1
        ((0, 2.9, 20, 0), 0.0),                    # straight but far beside the goal (|y| > 2 half heights)
    ]
    obs = torch.cat([puck_obs(*c) for c, _ in cases])
    quality = aux_targets(obs, {"winner": 0}, 15)["aux_shot_quality"].squeeze(-1)
    speed = lambda vx, vy: min(math.hypot(vx, vy) / 25, 1.0)  # noqa: E731
    expected = [q for _, q in cases[:5]] + [0.5 * speed(*cases[5][0][2:]), speed(*cases[6][0][2:]), 0.0]
    assert torch.allclose(quality, torch.tensor(expected), atol=1e-5)
    assert ((quality >= 0) & (quality <= 1)).all()


def test_targets_on_a_real_episode():
    """A game the (random) learner wins: targets have the buffer's layout and stay in range, and the K + 1 last
    steps are the goal's positives, with the puck at the goal line at the end."""
    import numpy as np
    from envs.hockey.task import make_hockey_env
    env, rng = make_hockey_env(opponent="weak", seed=3), np.random.default_rng(0)
    for _ in range(100):  # until the learner scores
        obs, _ = env.reset()
        steps, done = [obs], False
        while not done:
            obs, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4))
            steps.append(obs)
            done = terminated or truncated
        if info["winner"] == 1:
            break
    assert info["winner"] == 1 and len(steps) > 16
    t = aux_targets(torch.as_tensor(np.stack(steps)), info, 15)
    assert set(t) == set(AUX_TARGET_KEYS) and all(v.shape == (len(steps), 1) for v in t.values())
    assert t["aux_goal"][-16:].eq(1).all() and t["aux_goal"][:-16].eq(0).all()
    assert t["aux_puck_goal_dist"][-1] < GOAL_HALF_HEIGHT + 0.5
    assert (t["aux_puck_goal_dist"] >= 0).all() and (t["aux_puck_goal_dist"] < 9.5).all()
    assert ((t["aux_shot_quality"] >= 0) & (t["aux_shot_quality"] <= 1)).all()


# ---------------------------------------------------------------------------------------------- reward formula
@pytest.mark.parametrize("form", ["inverse", "pbrs"])
def test_aux_reward_formula(form):
    pred = {"goal_prob": torch.tensor([0.9, 0.5, 1.0]).view(3, 1, 1),
            "puck_goal_dist": torch.tensor([1.5, 0.05, 3.5]).view(3, 1, 1),
            "shot_quality": torch.tensor([0.7, 0.2, 0.4]).view(3, 1, 1)}
    phi = [0.0, 1 / 0.6 - 0.5, 1 / 4.0 - 0.5]  # closeness: 0 at d = 1.5; d = 0.05 clamps to 0.1
    assert torch.allclose(closeness(pred["puck_goal_dist"]).flatten(), torch.tensor(phi))
    gamma = 0.9
    f = phi[1:] if form == "inverse" else [gamma * phi[1] - phi[0], gamma * phi[2] - phi[1]]
    expected = [0.1 * 0.5 + 0.05 * f[0] + 0.05 * 0.2, 0.1 * 1.0 + 0.05 * f[1] + 0.05 * 0.4]
    reward, terms = aux_reward(pred, 0.1, 0.05, 0.05, form, gamma)
    assert reward.shape == (2, 1, 1)
    assert torch.allclose(reward.flatten(), torch.tensor(expected), atol=1e-6)
    assert torch.allclose(sum(terms.values()), reward)


def test_aux_reward_scored_state_current_reads_states_before_the_transition():
    """scored_state=current: the transition t -> t+1 is scored on state t (the seed's states[:-1])."""
    pred = {"goal_prob": torch.tensor([0.9, 0.5, 1.0]).view(3, 1, 1),
            "puck_goal_dist": torch.tensor([1.5, 0.05, 3.5]).view(3, 1, 1),
            "shot_quality": torch.tensor([0.7, 0.2, 0.4]).view(3, 1, 1)}
    phi = [0.0, 1 / 0.6 - 0.5]
    expected = [0.1 * 0.9 + 0.05 * phi[0] + 0.05 * 0.7, 0.1 * 0.5 + 0.05 * phi[1] + 0.05 * 0.2]
    reward, _ = aux_reward(pred, 0.1, 0.05, 0.05, "inverse", 0.9, scored_state="current")
    assert torch.allclose(reward.flatten(), torch.tensor(expected), atol=1e-6)
    with pytest.raises(ConfigError, match=r"aux_rewards.scored_state='current': current needs dist_form=inverse"):
        compose([*AUX_ON, "agent=dreamer", "aux_rewards.enabled=true", "aux_rewards.scored_state=current",
                 "aux_rewards.dist_form=pbrs"])
    agent = dreamer("aux_rewards.enabled=true", "aux_rewards.scored_state=current")
    assert agent.behavior.aux_rewards["scored_state"] == "current"


# ---------------------------------------------------------------------------------------------- Dreamer
def dreamer(*overrides):
    from src.dreamer.agent import Dreamer
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # actor_grad=auto with aux rewards warns
        cfg = compose([*TINY_DREAMER, *AUX_ON, *overrides])
    return Dreamer(cfg, HOCKEY_SPEC, torch.device("cpu"))


def hockey_batch(L, B):
    """A replayed batch (L, B) with stored auxiliary targets."""
    is_first = torch.zeros(L, B, 1, dtype=torch.bool)
    is_first[0] = True
    return TensorDict({"obs": torch.randn(L, B, 18), "action": torch.rand(L, B, 4) * 2 - 1,
                       "reward": torch.randn(L, B, 1), "terminated": torch.zeros(L, B, 1), "is_first": is_first,
                       "aux_goal": (torch.rand(L, B, 1) < 0.3).float(), "aux_puck_goal_dist": torch.rand(L, B, 1) * 8,
                       "aux_shot_quality": torch.rand(L, B, 1)}, batch_size=(L, B))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_dreamer_heads_train_with_the_world_model_loss():
    agent = dreamer()
    heads, batch = agent.wm.aux_heads, hockey_batch(8, 4)
    targets = {k: batch[k] for k in AUX_TARGET_KEYS}
    loss, metrics, _ = agent._wm_loss(batch["obs"], batch["action"], batch["reward"], 1 - batch["terminated"],
                                      batch["is_first"], targets)
    for key in ("aux_loss", "aux/goal_accuracy", "aux/puck_goal_dist_error", "aux/goal_loss", "aux/shot_loss"):
        assert key in metrics
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())
    # the heads shape the representation: their loss alone reaches the encoder and the RSSM
    agent.model_opt.zero_grad()
    aux, _ = heads.loss(agent.wm.rssm.feat(agent.wm.rssm.observe(agent.wm.encoder(batch["obs"]), batch["action"],
                                                                 batch["is_first"])[0]), targets)
    aux.mean().backward()
    assert agent.wm.encoder.mlp[0].weight.grad.abs().sum() > 0
    assert agent.wm.rssm.post_out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("actor_grad", ["reinforce", "dynamics"])
def test_behaviour_step_changes_neither_heads_nor_world_model(actor_grad, monkeypatch):
    """The seed's verification: with the world-model step disabled, a whole update (actor and critic, with
    auxiliary rewards) leaves every world-model parameter, the heads' included, bit-identical."""
    agent = dreamer("aux_rewards.enabled=true", f"actor_grad={actor_grad}")
    monkeypatch.setattr(agent.model_opt, "step", lambda: None)
    wm_before, actor_before = snapshot(agent.wm), snapshot(agent.behavior.actor)
    metrics = agent.update(hockey_batch(8, 4))
    assert metrics["imagination/aux_reward_mean"] != 0
    assert torch.isclose(metrics["imagination/total_reward_mean"],
                         metrics["imagination/base_reward_mean"] + metrics["imagination/aux_reward_mean"], atol=1e-5)
    for k, v in snapshot(agent.wm).items():
        assert torch.equal(v, wm_before[k]), k
    assert any(not torch.equal(v, actor_before[k]) for k, v in snapshot(agent.behavior.actor).items())


def test_aux_rewards_carry_no_gradient():
    """Even with the world model left trainable and returns backpropagated through imagination, the actor
    loss gives the heads no gradient (torch.no_grad), while the reward head in the same returns gets one."""
    agent = dreamer("aux_rewards.enabled=true", "actor_grad=dynamics")
    deter, stoch = agent.wm.rssm.initial(6, "cpu")
    start = (deter + torch.randn_like(deter), stoch)
    loss, _, metrics = agent._actor_loss(start, torch.ones(6, 1))
    loss.backward()
    assert all(p.grad is None for p in agent.wm.aux_heads.parameters())
    assert agent.wm.reward_head[-1].weight.grad.abs().sum() > 0  # (its output layer starts at zero)
    assert "imagination/advantage_abs_mean" in metrics and "actor_entropy" in metrics


def test_critic_targets_include_the_aux_rewards():
    """Same imagined trajectory with the auxiliary rewards on (decay factor 1) and off (0): the lambda-returns,
    the critic's targets, differ by exactly the lambda-return of the auxiliary rewards alone."""
    from src.dreamer.behavior import lambda_returns
    agent = dreamer("aux_rewards.enabled=true", "actor_grad=reinforce")
    wm, b = agent.wm, agent.behavior
    deter, stoch = wm.rssm.initial(5, "cpu")
    start = (deter + torch.randn_like(deter), stoch)
    returns = {}
    with torch.no_grad():
        for scale in (1.0, 0.0):
            torch.manual_seed(1)  # the same imagined trajectory each time
            _, (_, returns[scale], _), metrics = agent._actor_loss(start, torch.ones(5, 1), torch.tensor(scale))
            assert (metrics["imagination/aux_reward_mean"] != 0) == (scale == 1.0)
        torch.manual_seed(1)
        feat, _ = b.imagine(wm, start, agent.cfg.horizon)
        bonus, _ = aux_reward(wm.aux_heads(feat), 0.1, 0.05, 0.05, "inverse", b.gamma)  # (H, N, 1)
        expected = lambda_returns(bonus, wm.cont(feat[1:]), torch.zeros_like(feat[:, :, :1]), b.gamma,
                                  agent.cfg.return_lambda)
    assert expected.abs().min() > 0
    assert torch.allclose(returns[1.0] - returns[0.0], expected, atol=1e-5)


def test_decay_schedule_and_checkpointed_counter():
    agent = dreamer("aux_rewards.enabled=true", "aux_rewards.decay_steps=100")
    assert agent._aux_decay().item() == 1.0
    agent.updates = 25
    assert agent._aux_decay().item() == pytest.approx(0.75)
    agent.updates = 400
    assert agent._aux_decay().item() == 0.0
    other = dreamer("aux_rewards.enabled=true", "aux_rewards.decay_steps=100")
    other.load_state_dict(agent.state_dict())
    assert other.updates == 400
    assert dreamer("aux_rewards.enabled=true")._aux_decay().item() == 1.0  # decay_steps=0: constant


def test_missing_targets_are_a_clear_error():
    agent = dreamer()
    with pytest.raises(KeyError, match="aux_heads.enabled=True but the replayed steps lack"):
        agent.update(hockey_batch(8, 4).exclude("aux_goal"))


# ---------------------------------------------------------------------------------------------- TD-MPC2
def test_tdmpc2_goal_head_learns_on_its_latent():
    """The same heads on TD-MPC2's latent: trained with the world-model loss, never by the policy update, and
    the goal head fits a goal label that the observation determines."""
    from src.tdmpc2.agent import TDMPC2
    torch.manual_seed(0)
    cfg = compose([*TINY_TDMPC2, *AUX_ON, "horizon=3", "aux_heads.weights.dist=0", "aux_heads.weights.shot=0"])
    agent = TDMPC2(cfg, HOCKEY_SPEC, torch.device("cpu"))
    batch = hockey_batch(4, 16)
    batch["obs"] = batch["obs"][:1].expand(4, 16, 18).clone()  # a still scene: every latent can tell the label
    batch["aux_goal"] = (batch["obs"][..., :1] > 0).float()
    heads_before = snapshot(agent.model.aux_heads)
    metrics = [agent.update(batch) for _ in range(60)]
    assert metrics[-1]["aux/goal_loss"] < 0.5 * metrics[0]["aux/goal_loss"]
    assert metrics[-1]["aux/goal_accuracy"] == 1.0
    assert any(not torch.equal(v, heads_before[k]) for k, v in snapshot(agent.model.aux_heads).items())
    # the policy prior's optimiser never holds head parameters
    head_ids = {id(p) for p in agent.model.aux_heads.parameters()}
    assert not head_ids & {id(p) for g in agent.pi_optim.param_groups for p in g["params"]}
    assert head_ids <= {id(p) for g in agent.optim.param_groups for p in g["params"]}
    assert agent.parameter_counts()["aux_heads"] > 0


# ---------------------------------------------------------------------------------------------- config, checkpoints
def test_config_rules():
    with pytest.raises(ConfigError, match=r"aux_heads.enabled=True: task=pendulum-swingup provides no auxiliary"):
        compose(["aux_heads.enabled=true"])
    with pytest.raises(ConfigError, match=r"aux_rewards.enabled=True: needs aux_heads.enabled=true"):
        compose(["agent=dreamer", "task=hockey", "aux_rewards.enabled=true"])
    with pytest.raises(ConfigError, match=r"aux_rewards.enabled=True: auxiliary rewards shape Dreamer's"):
        compose([*AUX_ON, "aux_rewards.enabled=true"])
    with pytest.raises(ConfigError) as e:
        compose([*AUX_ON, "aux_heads.goal_horizon=0", "aux_rewards.dist_form=log", "aux_rewards.goal_scale=-1",
                 "aux_rewards.decay_steps=-5", "aux_heads.weights.dist=-1"])
    for key in ("aux_heads.goal_horizon=0", "aux_rewards.dist_form='log'", "aux_rewards.goal_scale=-1",
                "aux_rewards.decay_steps=-5", "aux_heads.weights.dist=-1"):
        assert key in str(e.value)
    with pytest.warns(UserWarning, match="reach the actor only through the critic"):
        compose(["agent=dreamer", *AUX_ON, "aux_rewards.enabled=true"])
    cfg = compose(["+experiment=hockey_dreamer_aux"])
    assert (cfg.agent, cfg.task, cfg.actor_entropy, cfg.actor_grad) == ("dreamer", "hockey", 3e-3, "reinforce")
    assert cfg.aux_heads.enabled and cfg.aux_rewards.enabled and cfg.aux_heads.goal_horizon == 15
    assert (cfg.aux_rewards.goal_scale, cfg.aux_rewards.dist_scale, cfg.aux_rewards.shot_scale) == (0.1, 0.05, 0.05)


def test_checkpoint_with_heads_does_not_load_without(tmp_path):
    from common import checkpoint
    agent = dreamer()
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, agent.cfg, HOCKEY_SPEC, agent, {"step": 0})
    with pytest.raises(checkpoint.CheckpointError, match=r"aux_heads.enabled: checkpoint True vs config False"):
        checkpoint.load(path, compose([*TINY_DREAMER, "task=hockey"]))
    checkpoint.load(path, agent.cfg)  # the same config loads


# ---------------------------------------------------------------------------------------------- end to end
def test_hockey_dreamer_with_aux_rewards_trains(tmp_path):
    proc = run_train(["agent=dreamer", "task=hockey", "aux_heads.enabled=true", "aux_rewards.enabled=true",
                      "model_size=XS", "batch_size=4", "seq_len=8", "horizon=4", "train_ratio=8", "steps=300",
                      "seed_steps=251", "eval_freq=100000", "eval_episodes=1", "checkpoint_freq=100000"],
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (train_csv,) = tmp_path.glob("runs/hockey/dreamer/default/seed1/*/metrics/train.csv")
    rows = list(csv.DictReader(open(train_csv)))
    last = rows[-1]
    for key in ("imagination/aux_reward_mean", "imagination/aux_reward_std", "imagination/aux_reward_min",
                "imagination/aux_reward_max", "imagination/base_reward_mean", "imagination/total_reward_mean",
                "imagination/advantage_abs_mean", "actor_entropy", "aux/goal_accuracy", "aux/puck_goal_dist_error"):
        assert last.get(key) not in (None, ""), key
        assert math.isfinite(float(last[key]))
