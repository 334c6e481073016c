"""M: a causal transformer over the last `window` entries (z, a_prev), with heads for the next latent and
the reward. The history is stored detached; only the current entry carries gradients (the seed's fix: the
old code detached everything, so the memory never learned from the controller or vision)."""
import torch
import torch.nn as nn

from common.layers import mlp


class Memory(nn.Module):
    """State of one stream: `history` (B, window - 1, token_dim) of earlier entries, newest last, and
    `length` (B,) how many of them are real (the rest, on the left, are padding after an episode start)."""

    def __init__(self, cfg, z_dim: int, action_dim: int):
        super().__init__()
        self.window, self.token_dim, dim = int(cfg.window), z_dim + action_dim, int(cfg.memory_dim)
        self.heads = int(cfg.memory_heads)
        self.input_proj = nn.Linear(self.token_dim, dim)
        self.position = nn.Parameter(torch.zeros(self.window, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, self.heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, int(cfg.memory_layers), norm=nn.LayerNorm(dim),
                                                 enable_nested_tensor=False)
        self.next_z = mlp(dim + action_dim, [dim], z_dim, hidden_act=nn.ReLU)
        self.reward = mlp(dim + action_dim, [dim], 1, hidden_act=nn.ReLU)
        self.h_dim = dim

    def initial(self, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(batch, self.window - 1, self.token_dim, device=device),
                torch.zeros(batch, dtype=torch.long, device=device))

    def forward(self, history: torch.Tensor, length: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """h_t (B, dim) at the current entry `token` (B, token_dim), which keeps its gradient; `history` is
        detached here whatever the caller passes."""
        x = torch.cat([history.detach(), token.unsqueeze(1)], 1)  # (B, W, token_dim), current entry last
        x = self.input_proj(x) + self.position
        w = self.window
        slot = torch.arange(w, device=x.device)
        valid = slot >= (w - 1 - length).unsqueeze(1)  # (B, W): padding on the left, the current entry is valid
        # blocked[b, i, j]: query i may not see key j. Causal, no padding keys; a padding query sees itself only
        # (a fully blocked row would give NaN, which reaches valid rows through the next layer)
        causal = slot.unsqueeze(1) >= slot.unsqueeze(0)  # (W, W) j <= i
        allowed = (causal & valid.unsqueeze(1)) | torch.eye(w, dtype=torch.bool, device=x.device)
        blocked = (~allowed).repeat_interleave(self.heads, 0)  # (B * heads, W, W), as nn.MultiheadAttention wants
        return self.transformer(x, mask=blocked)[:, -1]

    def advance(self, history: torch.Tensor, length: torch.Tensor, token: torch.Tensor):
        """The state after `token` became history (stored detached)."""
        history = torch.cat([history[:, 1:], token.detach().unsqueeze(1)], 1)
        return history, (length + 1).clamp(max=self.window - 1)

    def predict(self, h: torch.Tensor, action: torch.Tensor):
        """(next latent (B, z_dim), reward (B,)) predicted from h_t and a_t."""
        x = torch.cat([h, action], -1)
        return self.next_z(x), self.reward(x).squeeze(-1)
