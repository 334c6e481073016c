"""Air-hockey game (our re-implementation of the Tübingen ``hockey`` package) and its framework bridge.

Importing this package registers the gymnasium ids ``Hockey-v0`` (two-player :class:`HockeyEnv`) and
``Hockey-One-v0`` (:class:`HockeyEnv_BasicOpponent`, strong opponent by default).
"""

from .hockey_env import (
    BUG_FIXES,
    BasicOpponent,
    HockeyEnv,
    HockeyEnv_BasicOpponent,
    HumanOpponent,
    Mode,
)

__all__ = ["BUG_FIXES", "BasicOpponent", "HockeyEnv", "HockeyEnv_BasicOpponent", "HumanOpponent", "Mode",
           "register_envs"]


def register_envs() -> None:
    """Register ``Hockey-v0`` and ``Hockey-One-v0`` (idempotent). Entry points point at this package."""
    from gymnasium.envs.registration import register, registry

    if "Hockey-v0" not in registry:
        register(id="Hockey-v0", entry_point="envs.hockey.hockey_env:HockeyEnv", kwargs={"mode": 0})
    if "Hockey-One-v0" not in registry:
        register(id="Hockey-One-v0", entry_point="envs.hockey.hockey_env:HockeyEnv_BasicOpponent",
                 kwargs={"mode": 0, "weak_opponent": False})


register_envs()
