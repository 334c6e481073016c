"""DreamerV3 world model: RSSM (GRU deterministic state + Gaussian or categorical stochastic state),
observation encoder/decoder (MLP with symlog for vectors, CNN for 64x64 images, both for dicts), reward and
continue heads, optional auxiliary task heads (src/heads/aux_task.py), and the KL-balancing loss with free bits.

Shapes: a model state is a pair (deter (..., deter), stoch (..., stoch_dim)); the feature the heads and the
actor read is cat(deter, stoch). Distribution statistics are a single tensor: for the Gaussian latent
(..., 2 * stoch) = (mean, std); for the categorical latent (..., groups, classes) = log-probabilities
(after the unimix), so that the same code path handles sampling, the mode and the KL.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.init import variance_scaling_init, zero_
from common.layers import Mish, NormedLinear, mlp
from common.math import TwoHot, symlog
from src.heads.aux_task import AuxTaskHeads, aux_heads_enabled

ACTIVATIONS = {"silu": nn.SiLU, "elu": nn.ELU, "mish": Mish}


def activation(name: str) -> type[nn.Module]:
    return ACTIVATIONS[name]


def gumbel_argmax(log_probs: torch.Tensor) -> torch.Tensor:
    """Index drawn from the categorical over the last dim (Gumbel-max; vectorised, compile-friendly)."""
    gumbel = -torch.empty_like(log_probs).exponential_().log()
    return (log_probs + gumbel).argmax(-1)


# ---------------------------------------------------------------------------------------------- KL balancing
def kl_divergence(post: torch.Tensor, prior: torch.Tensor, latent: str) -> torch.Tensor:
    """KL(post || prior) summed over the latent, shape (...). Stats in the RSSM's format."""
    if latent == "gaussian":
        m1, s1 = post.chunk(2, -1)
        m2, s2 = prior.chunk(2, -1)
        kl = torch.log(s2 / s1) + (s1.pow(2) + (m1 - m2).pow(2)) / (2 * s2.pow(2)) - 0.5
        return kl.sum(-1)
    return (post.exp() * (post - prior)).sum((-2, -1))  # log-probs (..., groups, classes)


def kl_loss(post: torch.Tensor, prior: torch.Tensor, latent: str, free_nats: float, dyn_scale: float,
            rep_scale: float):
    """DreamerV3's balanced KL with free bits, per element (...):
    dyn_scale * max(free, KL(sg(post) || prior)) + rep_scale * max(free, KL(post || sg(prior))).
    Below `free_nats` a term is constant (no gradient); above it the dynamics term trains only the prior
    and the representation term only the posterior. Returns (loss, dyn_kl, rep_kl), the KLs unclipped."""
    dyn = kl_divergence(post.detach(), prior, latent)
    rep = kl_divergence(post, prior.detach(), latent)
    loss = dyn_scale * dyn.clamp(min=free_nats) + rep_scale * rep.clamp(min=free_nats)
    return loss, dyn, rep


# ---------------------------------------------------------------------------------------------- RSSM
class RSSM(nn.Module):
    def __init__(self, action_dim: int, embed_dim: int, deter: int, hidden: int, latent: str, stoch: int,
                 groups: int, classes: int, unimix: float, min_std: float, act):
        super().__init__()
        self.latent, self.deter_dim, self.unimix, self.min_std = latent, deter, unimix, min_std
        self.groups, self.classes = groups, classes
        self.stoch_dim = stoch if latent == "gaussian" else groups * classes
        stat_dim = 2 * stoch if latent == "gaussian" else groups * classes
        self.img_in = NormedLinear(self.stoch_dim + action_dim, hidden, act=act())
        self.gru = nn.GRUCell(hidden, deter)
        self.prior_net = nn.Sequential(NormedLinear(deter, hidden, act=act()), nn.Linear(hidden, stat_dim))
        self.post_h = nn.Linear(deter, hidden, bias=False)  # posterior net's first layer, split so that the
        self.post_e = nn.Linear(embed_dim, hidden)          # embedding part is one batched matmul per sequence
        self.post_ln, self.post_act = nn.LayerNorm(hidden), act()
        self.post_out = nn.Linear(hidden, stat_dim)

    @property
    def feat_dim(self) -> int:
        return self.deter_dim + self.stoch_dim

    def initial(self, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(batch, self.deter_dim, device=device), torch.zeros(batch, self.stoch_dim, device=device))

    @staticmethod
    def feat(state) -> torch.Tensor:
        return torch.cat(state, -1)

    # statistics -> distribution quantities
    def _stats(self, x: torch.Tensor) -> torch.Tensor:
        if self.latent == "gaussian":
            mean, std = x.chunk(2, -1)
            return torch.cat([mean, F.softplus(std) + self.min_std], -1)
        logits = x.unflatten(-1, (self.groups, self.classes))
        probs = F.softmax(logits, -1)
        if self.unimix > 0:
            probs = (1 - self.unimix) * probs + self.unimix / self.classes
        return probs.log()

    def sample(self, stats: torch.Tensor) -> torch.Tensor:
        """Reparameterised (Gaussian) or straight-through one-hot (categorical) sample, flattened."""
        if self.latent == "gaussian":
            mean, std = stats.chunk(2, -1)
            return mean + std * torch.randn_like(std)
        probs = stats.exp()
        onehot = F.one_hot(gumbel_argmax(stats), self.classes).to(probs.dtype)
        return (onehot + probs - probs.detach()).flatten(-2)

    def mode(self, stats: torch.Tensor) -> torch.Tensor:
        if self.latent == "gaussian":
            return stats.chunk(2, -1)[0]
        return F.one_hot(stats.argmax(-1), self.classes).to(stats.dtype).flatten(-2)

    # single steps
    def prior_stats(self, deter: torch.Tensor) -> torch.Tensor:
        return self._stats(self.prior_net(deter))

    def img_deter(self, state, action: torch.Tensor) -> torch.Tensor:
        """Next deterministic state h' = GRU(h, [z, a])."""
        deter, stoch = state
        x = self.img_in(torch.cat([stoch, action], -1))
        return self.gru(x.reshape(-1, x.shape[-1]), deter.reshape(-1, deter.shape[-1])).reshape(deter.shape)

    def post_stats(self, deter: torch.Tensor, embed_proj: torch.Tensor) -> torch.Tensor:
        """Posterior statistics from h and the projected embedding `post_e(embed)`."""
        return self._stats(self.post_out(self.post_act(self.post_ln(self.post_h(deter) + embed_proj))))

    def obs_step(self, state, action, embed, is_first=None, sample: bool = True):
        """One filtering step (acting): reset where is_first, then h' and the posterior sample."""
        if is_first is not None:
            keep = (~is_first).to(action.dtype)
            state = (state[0] * keep, state[1] * keep)
            action = action * keep
        deter = self.img_deter(state, action)
        stats = self.post_stats(deter, self.post_e(embed))
        return (deter, self.sample(stats) if sample else self.mode(stats)), stats

    # sequences
    def observe(self, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, state=None):
        """Filter a sequence. embed (T, B, E), action (T, B, A) = action before each step, is_first (T, B, 1).
        The state is reset to the initial state where is_first and at t=0 when `state` is None.
        Returns posterior states (deter (T, B, D), stoch (T, B, S)), posterior and prior statistics (T, B, ...)."""
        T, B = embed.shape[:2]
        if state is None:
            state = self.initial(B, embed.device)
            is_first = is_first.clone()
            is_first[0] = True
        keep = (~is_first.bool()).to(embed.dtype)  # (T, B, 1)
        embed_proj = self.post_e(embed)  # (T, B, hidden), one matmul for the whole sequence
        deters, stochs, posts = [], [], []
        for t in range(T):
            state = (state[0] * keep[t], state[1] * keep[t])
            deter = self.img_deter(state, action[t] * keep[t])
            post = self.post_stats(deter, embed_proj[t])
            state = (deter, self.sample(post))
            deters.append(deter)
            stochs.append(state[1])
            posts.append(post)
        deter = torch.stack(deters)
        prior = self.prior_stats(deter)  # the prior depends on h only: one batched call
        return (deter, torch.stack(stochs)), torch.stack(posts), prior

    def imagine(self, policy, start, horizon: int):
        """Roll the prior forward under `policy(feat) -> (action, extra)` from `start` (N,) states.
        Returns states (deter (H+1, N, D), stoch (H+1, N, S)) including the start, the actions (H, N, A)
        taken in states 0..H-1, and the policy's extras stacked (H, N, ...) (e.g. pre-tanh samples)."""
        state = start
        deters, stochs, actions, extras = [start[0]], [start[1]], [], []
        for _ in range(horizon):
            action, extra = policy(self.feat(state))
            deter = self.img_deter(state, action)
            state = (deter, self.sample(self.prior_stats(deter)))
            deters.append(state[0])
            stochs.append(state[1])
            actions.append(action)
            extras.append(extra)
        return (torch.stack(deters), torch.stack(stochs)), torch.stack(actions), torch.stack(extras)


# ---------------------------------------------------------------------------------------------- encoders
class _ChannelNorm(nn.Module):
    """LayerNorm over channels of a (N, C, H, W) map."""

    def __init__(self, channels: int):
        super().__init__()
        self.ln = nn.LayerNorm(channels)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvEncoder(nn.Module):
    """DreamerV3's image encoder: 4 stride-2 convs (depth d, 2d, 4d, 8d), 64x64 -> 4x4, LayerNorm + act."""

    def __init__(self, channels: int, depth: int, act):
        super().__init__()
        layers, c = [], channels
        for i in range(4):
            layers += [nn.Conv2d(c, depth * 2 ** i, 4, 2, 1), _ChannelNorm(depth * 2 ** i), act()]
            c = depth * 2 ** i
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out_dim = c * 16

    def forward(self, x):
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:]).float() / 255.0 - 0.5
        return self.net(x).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: features -> (8d, 4, 4) -> 4 transposed convs -> (C, 64, 64) in [-0.5, 0.5] units."""

    def __init__(self, feat_dim: int, channels: int, depth: int, act):
        super().__init__()
        self.depth = depth
        self.fc = nn.Linear(feat_dim, depth * 8 * 16)
        layers, c = [], depth * 8
        for i in range(3):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1), _ChannelNorm(c // 2), act()]
            c //= 2
        layers.append(nn.ConvTranspose2d(c, channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, feat):
        lead = feat.shape[:-1]
        x = self.fc(feat).reshape(-1, self.depth * 8, 4, 4)
        x = self.net(x)
        return x.reshape(*lead, *x.shape[1:])


def _split_obs(obs, keys):
    return {k: obs[k] for k in keys} if len(keys) > 1 or keys[0] != "obs" else {"obs": obs}


class MultiEncoder(nn.Module):
    """obs_shapes: {key: shape}; vectors go through one symlog-input MLP (concatenated), images through CNNs."""

    def __init__(self, obs_shapes: dict, hidden: int, layers: int, cnn_depth: int, act):
        super().__init__()
        self.keys = list(obs_shapes)
        self.vec_keys = [k for k, s in obs_shapes.items() if len(s) == 1]
        self.img_keys = [k for k, s in obs_shapes.items() if len(s) == 3]
        if len(self.vec_keys) + len(self.img_keys) != len(obs_shapes):
            raise ValueError(f"observations must be vectors or (C, 64, 64) images, got {obs_shapes}")
        self.out_dim = 0
        if self.vec_keys:
            vec_dim = sum(obs_shapes[k][0] for k in self.vec_keys)
            self.mlp = mlp(vec_dim, [hidden] * max(layers - 1, 0), hidden, out_act=act(), hidden_act=act)
            self.out_dim += hidden
        self.cnns = nn.ModuleDict({k: ConvEncoder(obs_shapes[k][0], cnn_depth, act) for k in self.img_keys})
        self.out_dim += sum(c.out_dim for c in self.cnns.values())

    def forward(self, obs) -> torch.Tensor:
        obs = _split_obs(obs, self.keys)
        parts = []
        if self.vec_keys:
            parts.append(self.mlp(symlog(torch.cat([obs[k].float() for k in self.vec_keys], -1))))
        parts += [self.cnns[k](obs[k]) for k in self.img_keys]
        return torch.cat(parts, -1)


class MultiDecoder(nn.Module):
    """Reconstructs every observation key from the feature: symlog targets for vectors, centred pixels
    for images; `loss` returns the summed squared error per step (...)."""

    def __init__(self, obs_shapes: dict, feat_dim: int, hidden: int, layers: int, cnn_depth: int, act):
        super().__init__()
        self.keys = list(obs_shapes)
        self.vec_keys = [k for k, s in obs_shapes.items() if len(s) == 1]
        self.img_keys = [k for k, s in obs_shapes.items() if len(s) == 3]
        self.vec_dims = [obs_shapes[k][0] for k in self.vec_keys]
        if self.vec_keys:
            self.mlp = mlp(feat_dim, [hidden] * layers, sum(self.vec_dims), hidden_act=act)
        self.cnns = nn.ModuleDict({k: ConvDecoder(feat_dim, obs_shapes[k][0], cnn_depth, act) for k in self.img_keys})

    def forward(self, feat) -> dict:
        out = {}
        if self.vec_keys:
            out.update(zip(self.vec_keys, self.mlp(feat).split(self.vec_dims, -1)))
        out.update({k: self.cnns[k](feat) for k in self.img_keys})
        return out

    def loss(self, feat, obs) -> torch.Tensor:
        obs, pred = _split_obs(obs, self.keys), self(feat)
        total = 0.0
        for k in self.vec_keys:
            total = total + (pred[k] - symlog(obs[k].float())).pow(2).sum(-1)
        for k in self.img_keys:
            target = obs[k].float() / 255.0 - 0.5
            total = total + (pred[k] - target).pow(2).sum((-3, -2, -1))
        return total


# ---------------------------------------------------------------------------------------------- world model
class WorldModel(nn.Module):
    def __init__(self, cfg, obs_shapes: dict, action_dim: int):
        super().__init__()
        act = activation(cfg.act)
        self.latent = cfg.latent
        self.encoder = MultiEncoder(obs_shapes, cfg.hidden, cfg.layers, cfg.cnn_depth, act)
        self.rssm = RSSM(action_dim, self.encoder.out_dim, cfg.deter, cfg.hidden, cfg.latent, cfg.stoch,
                         cfg.groups, cfg.classes, cfg.unimix, cfg.latent_min_std, act)
        feat = self.rssm.feat_dim
        self.decoder = MultiDecoder(obs_shapes, feat, cfg.hidden, cfg.layers, cfg.cnn_depth, act)
        self.reward_twohot = cfg.reward_head == "twohot"
        self.reward_head = mlp(feat, [cfg.hidden] * cfg.layers, cfg.num_bins if self.reward_twohot else 1,
                               hidden_act=act)
        self.cont_head = mlp(feat, [cfg.hidden] * cfg.layers, 1, hidden_act=act)
        self.aux_heads = None  # auxiliary task heads (aux_heads.*), trained on real targets with this loss
        if aux_heads_enabled(cfg):
            self.aux_heads = AuxTaskHeads(feat, [cfg.hidden] * cfg.layers, act, cfg.aux_heads.weights)
        self.two_hot = TwoHot(cfg.num_bins, cfg.vmin, cfg.vmax)
        self.apply(variance_scaling_init)
        zero_(self.reward_head[-1].weight, self.reward_head[-1].bias)

    def reward(self, feat) -> torch.Tensor:
        out = self.reward_head(feat)
        return self.two_hot.decode(out) if self.reward_twohot else out

    def reward_loss(self, feat, target) -> torch.Tensor:
        out = self.reward_head(feat)
        if self.reward_twohot:
            return self.two_hot.ce(out, target).squeeze(-1)
        return (out - target).pow(2).squeeze(-1)

    def cont(self, feat) -> torch.Tensor:
        """Probability of continuing (not terminated) in each state (..., 1)."""
        return torch.sigmoid(self.cont_head(feat))
