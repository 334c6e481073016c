import torch

from common.buffer import Buffer, episode_step


def _episode(idx, length, obs_dim=3, action_dim=2):
    steps = [episode_step(torch.full((obs_dim,), float(idx)), torch.zeros(action_dim), 0.0, False, True)]
    for t in range(1, length):
        steps.append(episode_step(torch.full((obs_dim,), float(idx)), torch.full((action_dim,), float(t)),
                                  float(t), t == length - 1, False))
    return torch.stack(steps)


def test_slices_never_cross_episodes_and_have_shape():
    torch.manual_seed(0)
    buf = Buffer(10_000, seq_len=4, batch_size=32)
    for i, length in enumerate([5, 9, 4, 30, 6, 12]):
        buf.add(_episode(i, length))
    for _ in range(20):
        td = buf.sample()
        assert td.shape == (4, 32)
        assert td["obs"].shape == (4, 32, 3) and td["action"].shape == (4, 32, 2)
        # every slice comes from one episode: its ids and observations are constant along time
        assert (td["episode"] == td["episode"][:1]).all()
        assert (td["obs"] == td["obs"][:1]).all()
        # consecutive steps: the stored action index grows by one (0 only at the first step)
        a = td["action"][..., 0]
        assert ((a[1:] - a[:-1]) == 1).all()
        # is_first only at an episode's first step
        assert (td["is_first"].squeeze(-1) == (a == 0)).all()


def test_save_and_load_round_trip(tmp_path):
    buf = Buffer(1000, seq_len=3, batch_size=4)
    for i in range(3):
        buf.add(_episode(i, 10))
    buf.save(str(tmp_path / "buf"))
    other = Buffer(1000, seq_len=3, batch_size=4)
    other.load(str(tmp_path / "buf"), buf.state_dict())
    assert len(other) == len(buf) == 30 and other.num_episodes == 3
    torch.manual_seed(1)
    a = buf.sample()
    torch.manual_seed(1)
    b = other.sample()
    assert torch.equal(a["obs"], b["obs"]) and torch.equal(a["action"], b["action"])


def test_memmap_storage(tmp_path):
    buf = Buffer(1000, seq_len=3, batch_size=4, storage="memmap", scratch_dir=str(tmp_path / "mm"))
    for i in range(2):
        buf.add(_episode(i, 10))
    td = buf.sample()
    assert td.shape == (3, 4) and (td["obs"] == td["obs"][:1]).all()
    assert any((tmp_path / "mm").rglob("*.memmap"))


def test_cross_episode_slices_replay_short_episodes_with_is_first():
    """Dreamer's slices run on across episode ends, so episodes shorter than the slice are still replayed."""
    torch.manual_seed(0)
    buf = Buffer(10_000, seq_len=8, batch_size=64, cross_episodes=True)
    for i in range(6):
        buf.add(_episode(i, 3))  # every episode is shorter than a slice
    td = buf.sample()
    assert td.shape == (8, 64)
    ep = td["episode"]
    assert (ep[1:] >= ep[:-1]).all()  # time order
    changes = ep[1:] != ep[:-1]  # (L-1, B): where a slice enters the next episode
    assert changes.any()
    assert (td["is_first"][1:].squeeze(-1)[changes]).all()  # ... which starts with is_first
    assert (ep[1:] - ep[:-1] <= 1).all()  # and no episode is skipped


def test_cross_episode_slices_never_join_newest_to_oldest_after_wrap():
    torch.manual_seed(0)
    buf = Buffer(40, seq_len=6, batch_size=128, cross_episodes=True)
    for i in range(13):  # 13 x 5 = 65 steps written into 40 rows: the storage wrapped once
        buf.add(_episode(i, 5))
    assert len(buf) == 40
    for _ in range(10):
        ep = buf.sample()["episode"]
        assert ((ep[1:] - ep[:-1] == 0) | (ep[1:] - ep[:-1] == 1)).all()
