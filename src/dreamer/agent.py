"""DreamerV3 agent on the framework's contract: act / update / state_dict / policy_state / parameter_counts."""
import torch
import torch.nn.functional as F

from common.config import primary_discount
from common.optim import optimiser_step
from common.precision import in_precision, resolve
from src.dreamer.behavior import Behavior
from src.dreamer.rssm import WorldModel, activation, kl_loss
from src.heads.aux_task import replayed_targets


class Dreamer:
    """World model (RSSM) trained on replayed sequences; actor-critic trained on imagined rollouts from every
    posterior state of the batch. Separate AdamW optimisers and gradient clipping for the three parts.

    act(obs, t0, eval_mode) keeps the recurrent state and previous action between calls and resets them when
    t0=True; eval_mode=True is deterministic (latent mode and policy mode)."""

    sequences_cross_episodes = True  # replayed sequences may span episodes: observe() resets at is_first

    def __init__(self, cfg, spec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, torch.device(device)
        self.discount = primary_discount(cfg, spec)
        shapes = spec.obs_shape
        self.obs_shapes = {k: tuple(v) for k, v in shapes.items()} if isinstance(shapes, dict) else {"obs": tuple(shapes)}
        self.wm = WorldModel(cfg, self.obs_shapes, spec.action_dim).to(self.device)
        self.precision = resolve(cfg.precision, self.device)  # fp32 | bf16 | bf16_emulated (common/precision.py)
        self.behavior = Behavior(cfg, self.wm.rssm.feat_dim, spec.action_dim, spec.discrete, activation(cfg.act),
                                 self.discount).to(self.device)
        # AdamW: decoupled weight decay (DreamerV2); with *_weight_decay=0 it is exactly Adam
        self.model_opt = torch.optim.AdamW(self.wm.parameters(), lr=cfg.model_lr, eps=cfg.model_eps,
                                           weight_decay=cfg.model_weight_decay)
        self.actor_opt = torch.optim.AdamW(self.behavior.actor.parameters(), lr=cfg.actor_lr, eps=cfg.ac_eps,
                                           weight_decay=cfg.ac_weight_decay)
        self.critic_opt = torch.optim.AdamW(self.behavior.critic.parameters(), lr=cfg.critic_lr, eps=cfg.ac_eps,
                                            weight_decay=cfg.ac_weight_decay)
        self.seq_len, self.batch_size = int(cfg.seq_len), int(cfg.batch_size)
        # train_every (when set) wins over train_ratio: one update every train_every agent steps
        self.updates_per_step = 1.0 / cfg.train_every if cfg.train_every else \
            float(cfg.train_ratio) / (self.batch_size * self.seq_len)
        self._wm_fn, self._actor_fn, self._critic_fn = self._wm_loss, self._actor_loss, self.behavior.critic_loss
        if cfg.compile:  # forward and (through AOTAutograd) backward graphs of each loss are compiled
            self._wm_fn = torch.compile(self._wm_loss)
            self._actor_fn = torch.compile(self._actor_loss)
            self._critic_fn = torch.compile(self.behavior.critic_loss)
        self._state, self._prev_action = None, None
        self.updates = 0  # update() calls so far (checkpointed): drives the aux_rewards.decay_steps schedule

    # ------------------------------------------------------------------ acting
    def _to_device(self, obs):
        if isinstance(obs, dict) or hasattr(obs, "keys"):
            return {k: v.to(self.device).unsqueeze(0) for k, v in obs.items()}
        return obs.to(self.device).unsqueeze(0)

    @torch.no_grad()
    @in_precision
    def act(self, obs, t0: bool = False, eval_mode: bool = False) -> torch.Tensor:
        """Action (action_dim,): in [-1, 1], or a one-hot float vector for discrete actions."""
        if t0 or self._state is None:
            self._state = self.wm.rssm.initial(1, self.device)
            self._prev_action = torch.zeros(1, self.spec.action_dim, device=self.device)
        embed = self.wm.encoder(self._to_device(obs))
        self._state, _ = self.wm.rssm.obs_step(self._state, self._prev_action, embed, sample=not eval_mode)
        action, raw = self.behavior.actor(self.wm.rssm.feat(self._state), deterministic=eval_mode)
        if self.spec.discrete:
            action = raw  # the exact one-hot (the straight-through value differs by rounding)
        self._prev_action = action
        return action.reshape(-1).cpu()

    # ------------------------------------------------------------------ learning
    def _wm_loss(self, obs, action, reward, cont, is_first, aux_targets=None):
        cfg, wm = self.cfg, self.wm
        embed = wm.encoder(obs)  # (T, B, E)
        states, post, prior = wm.rssm.observe(embed, action, is_first)
        feat = wm.rssm.feat(states)
        kl, dyn, rep = kl_loss(post, prior, cfg.latent, cfg.free_nats, cfg.dyn_scale, cfg.rep_scale)
        dec = wm.decoder.loss(feat, obs)
        rew = wm.reward_loss(feat, reward)
        con = F.binary_cross_entropy_with_logits(wm.cont_head(feat), cont, reduction="none").squeeze(-1)
        loss = cfg.dec_scale * dec + cfg.reward_scale * rew + cfg.cont_scale * con + kl  # (T, B)
        metrics = {}
        if wm.aux_heads is not None:  # auxiliary heads on the posterior feature of each step, real targets
            aux, metrics = wm.aux_heads.loss(feat, aux_targets)
            loss = loss + aux
            metrics["aux_loss"] = aux.mean().detach()
        loss = loss.mean()
        metrics.update({"model_loss": loss.detach(), "dec_loss": dec.mean().detach(),
                        "reward_loss": rew.mean().detach(), "cont_loss": con.mean().detach(),
                        "dyn_kl": dyn.mean().detach(), "rep_kl": rep.mean().detach()})
        return loss, metrics, (states[0].detach(), states[1].detach())

    def _actor_loss(self, start, start_cont, aux_decay=None):
        b = self.behavior
        with torch.set_grad_enabled(b.needs_dynamics_grad):  # REINFORCE needs no graph through imagination
            feat, raw = b.imagine(self.wm, start, self.cfg.horizon)
        return b.actor_loss(self.wm, feat, raw, start_cont, self.spec.episodic, aux_decay)

    def _aux_decay(self) -> torch.Tensor:
        """Factor on the auxiliary reward scales: 1, falling linearly to 0 over aux_rewards.decay_steps updates
        (0: no decay). A tensor, so a compiled actor loss does not recompile as it changes."""
        steps = self.cfg.aux_rewards.decay_steps if self.behavior.aux_rewards is not None else 0
        return torch.tensor(max(0.0, 1.0 - self.updates / steps) if steps else 1.0, device=self.device)

    @in_precision
    def update(self, batch) -> dict:
        """One training step on an (L, B) batch: world model, then actor, then critic; 0-d metric tensors."""
        cfg, wm, b = self.cfg, self.wm, self.behavior
        obs = batch["obs"]
        if hasattr(obs, "keys"):
            obs = {k: obs[k] for k in obs.keys()}
        action = batch["action"].float()
        reward = batch["reward"].float()
        cont = 1.0 - batch["terminated"].float()
        is_first = batch["is_first"].bool()
        aux_targets = replayed_targets(batch) if wm.aux_heads is not None else None  # each (L, B, 1)
        wm.train()
        b.train()

        loss, metrics, (deter, stoch) = self._wm_fn(obs, action, reward, cont, is_first, aux_targets)
        metrics["model_grad_norm"] = optimiser_step(self.model_opt, loss, wm.parameters(), cfg.model_grad_clip)

        start = (deter.flatten(0, 1), stoch.flatten(0, 1))  # every posterior state starts an imagined rollout
        start_cont = cont.flatten(0, 1)
        wm.requires_grad_(False)
        b.critic.requires_grad_(False)
        try:
            actor_loss, (feat, returns, weight), actor_metrics = self._actor_fn(start, start_cont, self._aux_decay())
            metrics["actor_grad_norm"] = optimiser_step(self.actor_opt, actor_loss, b.actor.parameters(),
                                                        cfg.actor_grad_clip)
            b.critic.requires_grad_(True)
            critic_loss, critic_metrics = self._critic_fn(feat, returns, weight)
            metrics["critic_grad_norm"] = optimiser_step(self.critic_opt, critic_loss, b.critic.parameters(),
                                                         cfg.critic_grad_clip)
        finally:
            wm.requires_grad_(True)
            b.critic.requires_grad_(True)
        b.update_slow()
        self.updates += 1
        metrics.update(actor_metrics)
        metrics.update(critic_metrics)
        return {k: v.detach() for k, v in metrics.items()}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"wm": self.wm.state_dict(), "behavior": self.behavior.state_dict(),
                "model_opt": self.model_opt.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.wm.load_state_dict(state["wm"])
        self.behavior.load_state_dict(state["behavior"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates = state["updates"]
        self._state = None

    def policy_state(self) -> dict:
        """What acting needs (encoder, RSSM, actor; no critic, no optimisers)."""
        return {"wm": self.wm.state_dict(), "actor": self.behavior.actor.state_dict()}

    def load_policy_state(self, state: dict) -> None:
        self.wm.load_state_dict(state["wm"])
        self.behavior.actor.load_state_dict(state["actor"])
        self._state = None

    def parameter_counts(self) -> dict:
        """Trainable parameters per component (the slow critic copy is not counted)."""
        wm, b = self.wm, self.behavior
        parts = {"encoder": wm.encoder, "rssm": wm.rssm, "decoder": wm.decoder, "reward": wm.reward_head,
                 "continue": wm.cont_head, "aux_heads": wm.aux_heads, "actor": b.actor, "critic": b.critic}
        counts = {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items() if v is not None}
        counts["total"] = sum(counts.values())
        return counts
