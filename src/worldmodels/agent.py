"""World Models agent (V-M-C) on the framework's contract, learned on-policy by A2C with GAE."""
import torch
import torch.nn.functional as F

from common.config import primary_discount
from common.optim import optimiser_step
from common.precision import in_precision, resolve
from src.worldmodels.controller import CANDIDATE_STD, Controller, planned_returns
from src.worldmodels.memory import Memory
from src.worldmodels.vision import Vision

PHASES = ("a2c", "vision", "memory")
# huber: the gradient of each error is bounded by 1, so the critic's share of the one clipped gradient norm does
# not grow with the return scale (conf/agent/worldmodels.yaml, `value_loss`); mse is the seed's
VALUE_LOSSES = {"huber": F.smooth_l1_loss, "mse": F.mse_loss}


def gae(reward, value, next_value, terminated, done, gamma: float, lam: float):
    """Generalised advantage estimation over a (T, N) rollout; returns (advantages, returns).

    `next_value[t]` is V of the observation step t returned (the final one when the episode ended there);
    `terminated` zeroes it (no future after a terminal state, but a time-limit truncation bootstraps);
    `done` (terminated or truncated) stops the recursion at episode ends inside the rollout."""
    advantages = torch.zeros_like(reward)
    last = torch.zeros_like(reward[0])
    for t in reversed(range(reward.shape[0])):
        delta = reward[t] + gamma * next_value[t] * (1 - terminated[t]) - value[t]
        last = delta + gamma * lam * (1 - done[t]) * last
        advantages[t] = last
    return advantages, advantages + value


class WorldModels:
    """V (VQ-VAE), M (causal transformer), C (policy + value) in one Adam optimiser, trained end to end.

    `act(obs, t0, eval_mode)` serves evaluation (one stream of memory state); `collect(obs, is_first)` and
    `values(obs)` serve the on-policy trainer's `num_envs` streams, and `update(rollout)` learns from the
    (T, N) rollout they produced. In the pretraining phases (`phase=vision|memory`) both act at random."""

    sequences_cross_episodes = False  # no replay: the contract's replay attributes are unused
    seq_len, batch_size, updates_per_step = 1, 1, 0.0

    def __init__(self, cfg, spec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, torch.device(device)
        self.discount = primary_discount(cfg, spec)
        self.phase = cfg.phase
        conv = len(spec.obs_shape) == 3 if cfg.encoder == "auto" else cfg.encoder == "conv"
        self.vision = Vision(cfg, spec.obs_shape, conv).to(self.device)
        self.memory = Memory(cfg, self.vision.z_dim, spec.action_dim).to(self.device)
        self.controller = Controller(cfg, self.vision.z_dim + self.memory.h_dim, spec.action_dim,
                                     spec.discrete).to(self.device)
        self.modules = {"vision": self.vision, "memory": self.memory, "controller": self.controller}
        self.optim = torch.optim.Adam([p for m in self.modules.values() for p in m.parameters()], lr=cfg.lr)
        self.precision = resolve(cfg.precision, self.device)
        self._streams = {}  # "act" / "collect": (history, length, prev_action) of each memory stream
        self._rng = torch.Generator().manual_seed(int(cfg.seed))  # random actions of the pretraining phases

    # ------------------------------------------------------------------ acting
    def _stream(self, name: str, batch: int, reset: torch.Tensor):
        """The memory state of stream `name`, with the rows where `reset` (B,) is true started afresh."""
        if name not in self._streams or self._streams[name][0].shape[0] != batch:
            reset = torch.ones(batch, dtype=torch.bool, device=self.device)
            history, length = self.memory.initial(batch, self.device)
            self._streams[name] = (history, length, torch.zeros(batch, self.spec.action_dim, device=self.device))
        history, length, prev = self._streams[name]
        keep = (~reset).to(self.device)
        return history * keep.view(-1, 1, 1), length * keep, prev * keep.view(-1, 1)

    def _random_actions(self, batch: int) -> torch.Tensor:
        if self.spec.discrete:
            index = torch.randint(self.spec.action_dim, (batch,), generator=self._rng)
            return F.one_hot(index, self.spec.action_dim).float()
        return torch.rand(batch, self.spec.action_dim, generator=self._rng) * 2 - 1

    def _choose(self, z, h, history, length, token, eval_mode: bool):
        """(action (B, A), plan (B, A)): the base policy's action, blended with planning when `planning=true`.

        `plan` is the planning share of the discrete behaviour distribution, `planning_weight` x one-hot of the
        best planned action (zeros otherwise): A2C takes the log-prob of the mixture the action was drawn from."""
        cfg, spec = self.cfg, self.spec
        base, stats = self.controller.act(torch.cat([z, h], -1), eval_mode)
        no_plan = torch.zeros_like(base)
        if not cfg.planning or cfg.planning_weight == 0:
            return base, no_plan
        w = float(cfg.planning_weight)
        plan = lambda candidates: planned_returns(  # noqa: E731  (B, S) scores of held candidates
            self.memory, self.controller, history, length, token, h, candidates, cfg.planning_horizon,
            self.discount, cfg.planning_bootstrap)
        if spec.discrete:  # every action; then sample from (1 - w) pi + w onehot(best planned action)
            every = torch.eye(spec.action_dim, device=self.device).expand(z.shape[0], -1, -1)
            share = w * F.one_hot(plan(every).argmax(-1), spec.action_dim).float()
            probs = (1 - w) * stats + share
            index = probs.argmax(-1) if eval_mode else torch.multinomial(probs, 1).squeeze(-1)
            return F.one_hot(index, spec.action_dim).float(), share
        # continuous: candidates around the policy mean (pre-tanh), the best blended with the base action (a
        # deterministic blend, not a mixture: A2C scores the blended action under the base policy)
        noise = torch.randn(z.shape[0], cfg.num_action_samples, spec.action_dim, device=self.device)
        candidates = torch.tanh(stats.unsqueeze(1) + CANDIDATE_STD * noise)
        best = candidates[torch.arange(z.shape[0]), plan(candidates).argmax(-1)]
        return (1 - w) * base + w * best, no_plan

    def _train(self, mode: bool) -> None:
        for m in self.modules.values():  # no dropout anywhere; eval mode lets the transformer take its fast path
            m.train(mode)

    def _step(self, name: str, obs: torch.Tensor, reset: torch.Tensor, eval_mode: bool):
        self._train(False)
        history, length, prev = self._stream(name, obs.shape[0], reset)
        z = self.vision.encode(obs)
        token = torch.cat([z, prev], -1)
        h = self.memory(history, length, token)
        if self.phase == "a2c":
            action, plan = self._choose(z, h, history, length, token, eval_mode)
        else:
            action = self._random_actions(obs.shape[0]).to(self.device)
            plan = torch.zeros_like(action)
        record = {"history": history, "length": length, "prev_action": prev, "action": action, "plan": plan,
                  "value": self.controller.value(torch.cat([z, h], -1))}
        self._streams[name] = (*self.memory.advance(history, length, token), action)
        return action, record

    @torch.no_grad()
    @in_precision
    def act(self, obs, t0: bool = False, eval_mode: bool = False) -> torch.Tensor:
        """Action (action_dim,): in [-1, 1], or a one-hot float vector for discrete actions."""
        reset = torch.tensor([t0])
        action, _ = self._step("act", obs.to(self.device).unsqueeze(0), reset, eval_mode)
        return action.squeeze(0).cpu()

    @torch.no_grad()
    @in_precision
    def collect(self, obs: torch.Tensor, is_first: torch.Tensor):
        """Actions (N, A) for a batch of envs, and what `update` needs of this step (a dict of (N, ...))."""
        action, record = self._step("collect", obs.to(self.device), is_first, eval_mode=False)
        return action, record

    @torch.no_grad()
    @in_precision
    def values(self, obs: torch.Tensor) -> torch.Tensor:
        """V (N,) of the observations the collect streams' last actions led to (their state is not moved): for
        a non-final observation it equals the value the next `collect` records."""
        self._train(False)
        history, length, prev = self._streams["collect"]
        z = self.vision.encode(obs.to(self.device))
        h = self.memory(history, length, torch.cat([z, prev], -1))
        return self.controller.value(torch.cat([z, h], -1))

    # ------------------------------------------------------------------ learning
    @in_precision
    def update(self, rollout) -> dict:
        """One gradient step on a (T, N) rollout (a TensorDict from the on-policy trainer); 0-d metrics."""
        cfg = self.cfg
        self._train(True)
        flat = lambda x: x.flatten(0, 1)  # noqa: E731  (T, N, ...) -> (T * N, ...)
        obs, action, reward = flat(rollout["obs"]), flat(rollout["action"]), flat(rollout["reward"])
        metrics = {}
        if self.phase == "memory":  # V is frozen: its latents are inputs
            with torch.no_grad():
                z = self.vision.encode(obs)
            vision_loss = torch.zeros((), device=self.device)
        else:
            z, vision_loss, metrics = self.vision.loss(obs)
        loss = cfg.vision_coef * vision_loss
        if self.phase != "vision":
            token = torch.cat([z, flat(rollout["prev_action"])], -1)
            h = self.memory(flat(rollout["history"]), flat(rollout["length"]), token)
            with torch.no_grad():
                z_target = self.vision.encode(flat(rollout["next_obs"]))
            z_pred, reward_pred = self.memory.predict(h, action)
            memory_loss = F.mse_loss(z_pred, z_target)
            reward_loss = F.mse_loss(reward_pred, reward)
            loss = loss + cfg.memory_coef * memory_loss + cfg.reward_coef * reward_loss
            metrics.update(memory_loss=memory_loss.detach(), reward_loss=reward_loss.detach())
        if self.phase == "a2c":
            advantages, returns = gae(rollout["reward"], rollout["value"], rollout["next_value"],
                                      rollout["terminated"].float(), rollout["done"].float(), self.discount,
                                      cfg.gae_lambda)
            advantages, returns = flat(advantages), flat(returns)
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            feat = torch.cat([z, h], -1)
            log_prob, entropy = self.controller.log_prob_entropy(feat, action, flat(rollout["plan"]))
            policy_loss = -(log_prob * advantages).mean()
            value_loss = VALUE_LOSSES[cfg.value_loss](self.controller.value(feat), returns)
            loss = loss + policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy.mean()
            metrics.update(policy_loss=policy_loss.detach(), value_loss=value_loss.detach(),
                           entropy=entropy.mean().detach(), advantage_abs=(advantages.abs().mean()).detach(),
                           return_mean=returns.mean().detach())
        def part_grad_norms():  # before clipping: each part's own gradient norm
            for name, m in self.modules.items():
                grads = [p.grad for p in m.parameters() if p.grad is not None]
                metrics[f"{name}_grad_norm"] = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        params = [p for m in self.modules.values() for p in m.parameters()]
        metrics["grad_norm"] = optimiser_step(self.optim, loss, params, cfg.grad_clip_norm, before_clip=part_grad_norms)
        metrics.update(vision_loss=vision_loss.detach(), loss=loss.detach())
        return {k: v.detach() for k, v in metrics.items()}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {**{k: m.state_dict() for k, m in self.modules.items()}, "optim": self.optim.state_dict(),
                "rng": self._rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state[k])
        self.optim.load_state_dict(state["optim"])
        self._rng.set_state(state["rng"])
        self._streams = {}

    def policy_state(self) -> dict:
        """What acting needs: all three parts (planning uses M and the value net)."""
        return {k: m.state_dict() for k, m in self.modules.items()}

    def load_policy_state(self, state: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state[k])
        self._streams = {}

    def parameter_counts(self) -> dict:
        counts = {k: sum(p.numel() for p in m.parameters()) for k, m in self.modules.items()}
        counts["total"] = sum(counts.values())
        return counts
