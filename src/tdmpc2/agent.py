"""TD-MPC2 agent: MPPI planning in the learned latent space, and the world-model / policy updates."""
import torch
import torch.nn.functional as F

from common import math
from common.config import discounts, task_discounts
from common.optim import optimiser_step
from common.precision import in_precision, resolve
from common.scale import RunningScale
from src.heads.aux_task import replayed_targets
from src.tdmpc2.world_model import WorldModel

PLANNER_STATS = ("planner/elite_value_mean", "planner/elite_value_std", "planner/final_std", "planner/score_entropy")


class TDMPC2:
    """act(obs, t0, eval_mode) -> action in [-1, 1]; update(batch) -> metrics; state_dict/load_state_dict.

    Auxiliary multi-discount value heads (multi_gamma.*) join the world-model loss when configured.
    Several tasks (`spec.multitask`): `act(..., task=i)` and batches with a `task` field; each task has its own
    discount (from its episode length) in the TD targets and in planning, and the planner's samples are zero on
    the task's padded action dims. Multi-discount heads are single-task only (`discounts` is then empty).
    """

    sequences_cross_episodes = False  # the latent rollout and TD targets assume one episode per slice

    def __init__(self, cfg, spec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, device
        self.task_discounts = None  # several tasks: (num_tasks,), indexed by task id
        if spec.multitask:
            self.discounts, self.discount = [], None
            self.task_discounts = torch.tensor(task_discounts(cfg, spec), device=device)
        else:
            self.discounts = discounts(cfg, spec)  # [primary, auxiliary...]
            self.discount = self.discounts[0]
        self.model = WorldModel(cfg, spec, self.discounts).to(device)
        self._next_diagnostics = 0  # not checkpointed: a resumed run writes its first snapshot at once
        self.precision = resolve(cfg.precision, device)  # fp32 | bf16 | bf16_emulated (common/precision.py)
        m = self.model
        # from the model's parameters, so a head added to the model is trained without being listed here: the
        # encoder (its own lr), the policy prior (its own optimiser), every other trainable one. The task
        # embedding goes last, where the list of modules that preceded this had it: the Adam states of earlier
        # checkpoints are stored in this order.
        own = {id(p) for p in (*m.encoder.parameters(), *m.policy_prior.parameters())}
        world = [(name, p) for name, p in m.named_parameters() if p.requires_grad and id(p) not in own]
        world_params = [p for name, p in sorted(world, key=lambda item: item[0].startswith("task_emb."))]
        self.optim = torch.optim.Adam([
            {"params": m.encoder.parameters(), "lr": cfg.lr * cfg.enc_lr_scale},
            {"params": world_params}], lr=cfg.lr)
        self.pi_optim = torch.optim.Adam(m.policy_prior.parameters(), lr=cfg.lr, eps=1e-5)
        self.scale = RunningScale(cfg.tau).to(device)
        self.updates_per_step = cfg.updates_per_step
        self.seq_len = cfg.horizon + 1
        self.batch_size = cfg.batch_size
        self._rho = cfg.rho ** torch.arange(cfg.horizon, device=device, dtype=torch.float32)  # (T,)
        self._prev_mean = torch.zeros(cfg.horizon, spec.action_dim, device=device)
        self._plan_stats = torch.zeros(len(PLANNER_STATS) + 1, device=device)  # sums over training plans, count
        self._plan_fn, self._update_fn = self._plan, self._update
        if cfg.compile:
            self._plan_fn = torch.compile(self._plan, mode="reduce-overhead" if device.type == "cuda" else None)
            self._update_fn = torch.compile(self._update)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    @in_precision
    def act(self, obs: torch.Tensor, t0: bool = False, eval_mode: bool = False, task: int | None = None
            ) -> torch.Tensor:
        """Action (action_dim,) for one observation; `t0` marks the first step of an episode; `task` is the
        task id with several tasks (the action is zero on that task's padded dims)."""
        self.model.eval()
        obs = obs.to(self.device, non_blocking=True).unsqueeze(0)
        task = None if task is None else torch.tensor(task, device=self.device)  # 0-d: one task for all rows
        if self.cfg.mpc:
            action = self._plan_fn(obs, torch.tensor(t0, device=self.device), eval_mode, task)
        else:
            action, info = self.model.pi(self.model.encode(obs, task), task)
            action = info["mean"] if eval_mode else action
        return action.reshape(-1).cpu()

    def _estimate_value(self, z: torch.Tensor, actions: torch.Tensor, task: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """Discounted return of each action sequence (H, N, A) from latent z (N, latent): (N, 1)."""
        m = self.model
        gamma = self.discount if task is None else self.task_discounts[task]
        ret, discount = torch.zeros(z.shape[0], 1, device=z.device), 1.0
        alive = torch.ones_like(ret)
        for t in range(self.cfg.horizon):
            reward = m.two_hot.decode(m.reward(z, actions[t], task))
            z = m.next(z, actions[t], task)
            ret = ret + discount * alive * reward
            discount *= gamma
            if self.spec.episodic:
                alive = alive * (m.termination(z, task) <= 0).float()  # P(terminated) > 0.5 ends the rollout
        action, _ = m.pi(z, task)
        return ret + discount * alive * m.Q(z, action, return_type="avg", task=task)

    def _plan(self, obs: torch.Tensor, t0: torch.Tensor, eval_mode: bool, task: torch.Tensor | None = None
              ) -> torch.Tensor:
        cfg, A = self.cfg, self.spec.action_dim
        H, N, P = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs
        mask = self.model.action_mask(task)  # (A,): 0 on the task's padded action dims; None with one task
        z = self.model.encode(obs, task)  # (1, latent)
        actions = torch.empty(H, N, A, device=self.device)
        if P > 0:  # trajectories of the policy prior join the population
            _z = z.expand(P, -1)
            for t in range(H):
                actions[t, :P], _ = self.model.pi(_z, task)
                if t < H - 1:
                    _z = self.model.next(_z, actions[t, :P], task)
        z = z.expand(N, -1)
        # warm start: the previous plan shifted by one step, unless this is the episode's first step
        shifted = torch.cat([self._prev_mean[1:], torch.zeros_like(self._prev_mean[:1])])
        mean = torch.where(t0, torch.zeros_like(shifted), shifted)  # (H, A)
        std = torch.full((H, A), cfg.max_std, device=self.device)
        noise = torch.randn(cfg.iterations, H, N - P, A, device=self.device)
        for i in range(cfg.iterations):
            actions[:, P:] = (mean.unsqueeze(1) + std.unsqueeze(1) * noise[i]).clamp(-1, 1)
            if mask is not None:  # the Gaussian samples never move the task's padded action dims
                actions[:, P:] = actions[:, P:] * mask
            value = self._estimate_value(z, actions, task).nan_to_num(0).squeeze(1)  # (N,)
            elite_value, elite_idx = torch.topk(value, cfg.num_elites)
            elite_actions = actions[:, elite_idx]  # (H, E, A)
            score = torch.softmax(cfg.temperature * elite_value, 0)  # (E,), exp(temp * (v - max)) normalised
            mean = torch.einsum("e,hea->ha", score, elite_actions)
            std = torch.einsum("e,hea->ha", score, (elite_actions - mean.unsqueeze(1)).pow(2)).sqrt()
            std = std.clamp(cfg.min_std, cfg.max_std)
            if mask is not None:  # nor does the exploration noise added below
                std = std * mask
        # execute one elite sequence drawn by score, not the mean (keeps multi-modal plans coherent)
        chosen = elite_actions[:, math.gumbel_softmax_sample(score)].squeeze(1)  # (H, A)
        action = chosen[0]
        if not eval_mode:
            action = action + std[0] * torch.randn(A, device=self.device)
        self._prev_mean.copy_(mean)
        if not eval_mode:  # statistics of the final MPPI iteration, summed until planner_stats() reads them
            final_std = std.sum() / (H * (A if mask is None else mask.sum()))  # over the task's own dims
            self._plan_stats.add_(torch.stack([elite_value.mean(), elite_value.std(correction=0), final_std,
                                               torch.special.entr(score).sum(), torch.ones_like(final_std)]).float())
        return action.clamp(-1, 1)

    def planner_stats(self) -> dict:
        """Means over the training-time plans since the last call (which it resets), as floats: elite value
        mean and std, final sampling std, entropy of the temperature-weighted elite scores; {} without plans."""
        sums = self._plan_stats.tolist()
        self._plan_stats.zero_()
        return {name: s / sums[-1] for name, s in zip(PLANNER_STATS, sums)} if sums[-1] else {}

    # ------------------------------------------------------------------ learning
    @in_precision
    def update(self, batch) -> dict:
        """One gradient step on a (horizon+1, B) batch; returns detached 0-d metric tensors."""
        obs = batch["obs"]  # (T+1, B, *obs_shape)
        action = batch["action"][1:]  # (T, B, A): action taken at step t
        reward = batch["reward"][1:]  # (T, B, 1): reward received after it
        terminated = batch["terminated"][1:]  # (T, B, 1)
        aux_targets = None
        if self.model.aux_heads is not None:  # targets of the steps whose latents the heads read: 0..T-1
            aux_targets = {k: v[:-1] for k, v in replayed_targets(batch).items()}  # each (T, B, 1)
        task = batch["task"][0] if self.spec.multitask else None  # (B,): one task per slice
        if self.cfg.compile:
            torch.compiler.cudagraph_mark_step_begin()
        metrics = self._update_fn(obs, action, reward, terminated, aux_targets, task)
        return {k: v.detach() for k, v in metrics.items()}

    def _update(self, obs, action, reward, terminated, aux_targets=None, task=None) -> dict:
        cfg, m = self.cfg, self.model
        T = cfg.horizon
        with torch.no_grad():
            next_z = m.encode(obs[1:], task)  # (T, B, latent)
            next_action, _ = m.pi(next_z, task)
            bootstrap = m.Q(next_z, next_action, return_type="min", target=True, task=task)  # (T, B, 1)
            discount = self.discount if task is None else self.task_discounts[task].unsqueeze(-1)  # (B, 1)
            td_target = reward + discount * (1 - terminated) * bootstrap

        m.train()
        zs = self._rollout(obs[0], action, task)  # (T+1, B, latent)
        consistency_loss = ((zs[1:] - next_z).pow(2).mean((1, 2)) * self._rho).sum()
        _zs = zs[:-1]
        q_logits, q_feats = m.Q_with_features(_zs, action, task=task)  # (num_q, T, B, num_bins), (T, B, mlp_dim)
        reward_ce = m.two_hot.ce(m.reward(_zs, action, task), reward)  # (T, B, 1)
        value_ce = m.two_hot.ce(q_logits, td_target.unsqueeze(0))  # (num_q, T, B, 1)
        consistency_loss = consistency_loss / T
        reward_loss = (reward_ce.mean((1, 2)) * self._rho).sum() / T
        value_loss = (value_ce.mean((2, 3)) * self._rho).sum() / (T * cfg.num_q)
        if m.termination_head is not None:
            termination_loss = F.binary_cross_entropy_with_logits(m.termination(zs[1:], task), terminated)
        else:
            termination_loss = torch.zeros((), device=obs.device)
        total = (cfg.consistency_coef * consistency_loss + cfg.reward_coef * reward_loss
                 + cfg.value_coef * value_loss + cfg.termination_coef * termination_loss)
        metrics = {"consistency_loss": consistency_loss, "reward_loss": reward_loss, "value_loss": value_loss,
                   "termination_loss": termination_loss}
        if m.multi_gamma_head is not None:
            aux_loss, aux_metrics = m.multi_gamma_head.loss(self._multi_gamma_input(_zs, action, q_feats), reward,
                                                            terminated, bootstrap, m.two_hot, self._rho)
            total = total + aux_loss
            metrics.update(aux_metrics)
        if m.aux_heads is not None:  # auxiliary task heads on the rollout latents, rho**t weighted like the reward
            aux, aux_metrics = m.aux_heads.loss(_zs, aux_targets)  # (T, B)
            aux_loss = (aux.mean(1) * self._rho).sum() / T
            total = total + aux_loss
            metrics.update(aux_metrics, aux_loss=aux_loss)

        metrics["grad_norm"] = optimiser_step(self.optim, total, m.parameters(), cfg.grad_clip_norm)

        metrics["pi_loss"], metrics["pi_entropy"] = self._update_pi(zs.detach(), task)
        m.update_target_q(cfg.tau)
        metrics["total_loss"] = total.detach()
        metrics["pi_scale"] = self.scale.value.clone()
        return metrics

    def _rollout(self, z0_obs: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Latents (T+1, B, latent): the encoded first observation, then the dynamics under `action`."""
        z = self.model.encode(z0_obs, task)
        zs = [z]
        for t in range(action.shape[0]):
            z = self.model.next(z, action[t], task)
            zs.append(z)
        return torch.stack(zs)

    def _multi_gamma_input(self, zs, action, q_feats):
        """What the heads read, (T, B, mlp_dim): the Q ensemble's hidden layer of (z_t, a_t) (the targets are
        action values). grad_to_q=true: the update's own ensemble forward `q_feats`, so their loss trains the
        ensemble too; false: a forward with detached ensemble weights (the gradient reaches z only)."""
        return q_feats if self.cfg.multi_gamma.grad_to_q else self.model.Q_features(zs, action, detach=True)

    def diagnostics(self, step: int, sample) -> dict[str, list[dict]]:
        """The trainer's optional diagnostics hook (trainer/base.py): every multi_gamma.log_interval_steps steps
        (at the first call past each multiple; online: episode ends) a bounded snapshot of the auxiliary heads
        on a fresh replay batch `sample()`: the standard tier has 4 examples' targets and predictions,
        multi_gamma.debug_logging=true up to log_num_examples with every field."""
        mg = self.cfg.multi_gamma
        if not mg.enabled or step < self._next_diagnostics:
            return {}
        self._next_diagnostics = (step // mg.log_interval_steps + 1) * mg.log_interval_steps
        examples = mg.log_num_examples if mg.debug_logging else min(4, mg.log_num_examples)
        records = self.multi_gamma_snapshot(sample(), examples, full=mg.debug_logging)
        return {"multi_gamma_snapshots": [{"step": step, **record} for record in records]}

    @torch.no_grad()
    def multi_gamma_snapshot(self, batch, num_examples: int, full: bool = True) -> list[dict]:
        """Per auxiliary discount, for the first `num_examples` sequences of a replay batch and each rollout
        step: target, decoded prediction, absolute error and, when `full` (the debug tier), bootstrap, top-2
        bins with probabilities, CE."""
        if self.model.multi_gamma_head is None:
            return []
        self.model.eval()
        obs, action = batch["obs"][:, :num_examples], batch["action"][1:, :num_examples]
        reward, terminated = batch["reward"][1:, :num_examples], batch["terminated"][1:, :num_examples]
        next_z = self.model.encode(obs[1:])
        bootstrap = self.model.Q(next_z, self.model.pi(next_z)[0], return_type="min", target=True)  # (T, B, 1)
        zs = self._rollout(obs[0], action)[:-1]  # (T, B, latent)
        targets, logits, ce = self.model.multi_gamma_head.terms(self.model.Q_features(zs, action), reward,
                                                                terminated, bootstrap, self.model.two_hot)
        preds = self.model.two_hot.decode(logits)  # (m, T, B, 1)
        top_p, top_bin = logits.softmax(-1).topk(2, dim=-1)  # (m, T, B, 2)
        records = []
        for i, gamma in enumerate(self.discounts[1:]):
            for b in range(obs.shape[1]):
                record = {"gamma": gamma, "example": b, "target": targets[i, :, b, 0].tolist(),
                          "prediction": preds[i, :, b, 0].tolist(),
                          "abs_error": (preds[i, :, b, 0] - targets[i, :, b, 0]).abs().tolist()}
                if full:
                    record.update({"bootstrap": bootstrap[:, b, 0].tolist(), "top2_bins": top_bin[i, :, b].tolist(),
                                   "top2_probs": top_p[i, :, b].tolist(), "ce_per_step": ce[i, :, b, 0].tolist()})
                records.append(record)
        return records

    def _update_pi(self, zs: torch.Tensor, task: torch.Tensor | None = None):
        """Policy prior: maximise scaled Q (detached Q weights) plus entropy, weighted by rho**t (the entropy
        estimate `entropy=scaled|squashed|scaled_tanh` names, see WorldModel.pi)."""
        action, info = self.model.pi(zs, task)
        q = self.model.Q(zs, action, return_type="avg", detach=True, task=task)  # (T+1, B, 1)
        self.scale.update(q[0])
        q = self.scale(q)
        rho = self.cfg.rho ** torch.arange(len(q), device=q.device, dtype=q.dtype)
        entropy = info[{"scaled": "scaled_entropy", "squashed": "entropy", "scaled_tanh": "scaled_tanh_entropy"}[
            self.cfg.entropy]]
        pi_loss = (-(self.cfg.entropy_coef * entropy + q).mean((1, 2)) * rho).mean()
        optimiser_step(self.pi_optim, pi_loss, self.model.policy_prior.parameters(), self.cfg.grad_clip_norm)
        return pi_loss.detach(), info["entropy"].mean().detach()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optim": self.optim.state_dict(),
                "pi_optim": self.pi_optim.state_dict(), "scale": self.scale.state_dict(),
                "multi_gamma": {"discounts": self.discounts[1:], "head": self.cfg.multi_gamma.head
                                if self.model.multi_gamma_head is not None else None},
                "tasks": list(self.spec.tasks)}

    def _check_tasks(self, state: dict) -> None:
        """Task ids index the task embedding: a state of another task list (or order) must not load."""
        saved = state["tasks"]
        if (len(saved) > 1 or self.spec.multitask) and saved != list(self.spec.tasks):
            raise ValueError(f"checkpoint was trained on tasks {saved} but this agent has tasks "
                             f"{list(self.spec.tasks)} (the task list and its order belong to the architecture)")

    def load_state_dict(self, state: dict) -> None:
        self._check_tasks(state)
        saved = state["multi_gamma"]
        mine = self.state_dict()["multi_gamma"]
        if [round(g, 9) for g in saved["discounts"]] != [round(g, 9) for g in mine["discounts"]]:
            raise ValueError(f"checkpoint has multi_gamma auxiliary discounts {saved['discounts'] or 'none'} "
                             f"(head={saved['head']}) but the config asks for {mine['discounts'] or 'none'}; "
                             "set multi_gamma.enabled/gammas to match the checkpoint")
        self.model.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        self.pi_optim.load_state_dict(state["pi_optim"])
        self.scale.load_state_dict(state["scale"])

    def policy_state(self) -> dict:
        """What is needed to act (for opponents): the model weights, no optimisers."""
        return {"model": self.model.state_dict(), "tasks": list(self.spec.tasks)}

    def load_policy_state(self, state: dict) -> None:
        self._check_tasks(state)
        self.model.load_state_dict(state["model"])

    def parameter_counts(self) -> dict:
        """Trainable parameters per component (the target Q copy is not counted)."""
        m = self.model
        parts = {"encoder": m.encoder, "dynamics": m.dynamics, "reward": m.reward_head,
                 "termination": m.termination_head, "policy_prior": m.policy_prior, "q_ensemble": m.q_ensemble,
                 "multi_gamma_heads": m.multi_gamma_head, "aux_heads": m.aux_heads, "task_embedding": m.task_emb}
        counts = {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items() if v is not None}
        counts["total"] = sum(counts.values())
        return counts
