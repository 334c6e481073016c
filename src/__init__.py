"""Agents and their world models. `make_agent(cfg, spec, device)` builds the one named by `cfg.agent`."""


def make_agent(cfg, spec, device):
    if cfg.agent == "tdmpc2":
        from src.tdmpc2.agent import TDMPC2
        return TDMPC2(cfg, spec, device)
    if cfg.agent == "dreamer":
        from src.dreamer.agent import Dreamer
        return Dreamer(cfg, spec, device)
    if cfg.agent == "worldmodels":
        from src.worldmodels.agent import WorldModels
        return WorldModels(cfg, spec, device)
    raise ValueError(f"agent={cfg.agent!r}: unknown agent")
