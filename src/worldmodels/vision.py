"""V: a VQ-VAE. Images go through a conv encoder/decoder, vectors through an MLP one; both quantise their
latent with one shared codebook, so z_t is always a concatenation of codebook vectors."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.layers import mlp

IMAGE_GRID = 16  # the conv encoder halves the image four times: a (H/16, W/16) grid of codes


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantisation of the last dim with the straight-through estimator: the forward
    value is the codebook vector, the backward pass copies the gradient to the encoder output."""

    def __init__(self, codebook_size: int, code_dim: int):
        super().__init__()
        self.codebook = nn.Embedding(codebook_size, code_dim)
        nn.init.uniform_(self.codebook.weight, -1 / codebook_size, 1 / codebook_size)

    def forward(self, z_e: torch.Tensor):
        """z_e (..., D) -> (z_q (..., D) straight-through, codebook loss, commitment loss, indices (...,))."""
        flat = z_e.reshape(-1, z_e.shape[-1])
        codes = self.codebook.weight
        # squared distances (M, K) without materialising (M, K, D)
        dist = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(-1)
        indices = dist.argmin(-1).reshape(z_e.shape[:-1])
        e = self.codebook(indices)
        codebook_loss = F.mse_loss(e, z_e.detach())  # moves the codebook towards the encoder outputs
        commitment_loss = F.mse_loss(z_e, e.detach())  # keeps the encoder close to its codes
        z_q = z_e + (e - z_e).detach()
        return z_q, codebook_loss, commitment_loss, indices

    @torch.no_grad()
    def restart_dead(self, z_e: torch.Tensor, indices: torch.Tensor) -> int:
        """Move every code that no vector of this batch chose onto a random encoder output of the batch; returns
        how many moved. Why: the codes start near 0 (+-1/K) while the encoder's outputs have norm ~1, so a few
        codes win every vector and the rest never get a gradient (CartPole: 4-8 of 64 in use per position,
        93 distinct latents over 2000 states, too coarse to balance the pole)."""
        flat = z_e.detach().reshape(-1, z_e.shape[-1])
        used = torch.zeros(self.codebook.num_embeddings, dtype=torch.bool, device=flat.device)
        used[indices.flatten()] = True
        dead = (~used).nonzero().squeeze(-1)
        if len(dead):  # in place, after the losses: their graphs hold the indices, not the codebook
            pick = torch.randint(flat.shape[0], (len(dead),), device=flat.device)
            self.codebook.weight.data[dead] = flat[pick]
        return len(dead)


class Vision(nn.Module):
    """`encode(obs) -> z` (B, z_dim) and `loss(obs) -> (z, loss, metrics)`: reconstruction MSE plus the
    codebook loss plus `commitment_coef` times the commitment loss."""

    def __init__(self, cfg, obs_shape, conv: bool):
        super().__init__()
        self.obs_shape, self.conv, self.commitment_coef = tuple(obs_shape), conv, float(cfg.commitment_coef)
        self.restart_dead_codes = bool(cfg.restart_dead_codes)
        d, code_dim = int(cfg.cnn_depth), int(cfg.code_dim)
        if conv:
            c, h, w = self.obs_shape
            self.grid = (h // IMAGE_GRID, w // IMAGE_GRID)
            self.num_codes = self.grid[0] * self.grid[1]
            self.encoder = nn.Sequential(
                nn.Conv2d(c, d, 4, 2, 1), nn.ReLU(), nn.Conv2d(d, 2 * d, 4, 2, 1), nn.ReLU(),
                nn.Conv2d(2 * d, 4 * d, 4, 2, 1), nn.ReLU(), nn.Conv2d(4 * d, 4 * d, 4, 2, 1), nn.ReLU(),
                nn.Conv2d(4 * d, code_dim, 1))
            self.decoder = nn.Sequential(
                nn.Conv2d(code_dim, 4 * d, 1), nn.ReLU(), nn.ConvTranspose2d(4 * d, 4 * d, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(4 * d, 2 * d, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(2 * d, d, 4, 2, 1),
                nn.ReLU(), nn.ConvTranspose2d(d, c, 4, 2, 1))
        else:
            self.num_codes = int(cfg.num_codes)
            self.encoder = mlp(self.obs_shape[0], [int(cfg.enc_dim)], self.num_codes * code_dim, hidden_act=nn.ReLU)
            self.decoder = mlp(self.num_codes * code_dim, [int(cfg.enc_dim)], self.obs_shape[0], hidden_act=nn.ReLU)
        self.quantizer = VectorQuantizer(int(cfg.codebook_size), code_dim)
        self.z_dim = self.num_codes * code_dim

    def _preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float() / 255.0 - 0.5 if self.conv else obs.float()

    def _quantize(self, x: torch.Tensor):
        if self.conv:  # (B, D, h, w) -> codes (B, h*w, D)
            z_e = self.encoder(x).flatten(2).transpose(1, 2)
        else:  # (B, num_codes * D) -> (B, num_codes, D)
            z_e = self.encoder(x).unflatten(-1, (self.num_codes, -1))
        z_q, codebook_loss, commitment_loss, indices = self.quantizer(z_e)
        return z_q.flatten(1), codebook_loss, commitment_loss, z_e, indices

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self._quantize(self._preprocess(obs))[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.conv:  # (B, h*w*D) -> (B, D, h, w)
            z = z.unflatten(1, (self.num_codes, -1)).transpose(1, 2).unflatten(2, self.grid)
        return self.decoder(z)

    def loss(self, obs: torch.Tensor):
        x = self._preprocess(obs)
        z, codebook_loss, commitment_loss, z_e, indices = self._quantize(x)
        recon_loss = F.mse_loss(self.decode(z), x)
        loss = recon_loss + codebook_loss + self.commitment_coef * commitment_loss
        metrics = {"recon_loss": recon_loss.detach(), "codebook_loss": codebook_loss.detach(),
                   "commitment_loss": commitment_loss.detach(),
                   "codes_used": torch.tensor(float(indices.unique().numel()))}
        if self.restart_dead_codes:
            metrics["codes_restarted"] = torch.tensor(float(self.quantizer.restart_dead(z_e, indices)))
        return z, loss, metrics
