"""The one evaluation loop, used by the trainers (eval.csv) and by evaluate.py (evaluation.json)."""
import torch


def run_episode(env, agent, eval_mode: bool = True, task: int | None = None, frames: list | None = None):
    """One episode: (return, length, final info). `task` picks the task of a multi-task env (without moving its
    rotation) and is passed to the agent; `frames` collects `env.render()` before each step."""
    obs = env.reset() if task is None else env.reset(task=task)
    kwargs = {} if task is None else {"task": task}
    done, ret, t, info = False, 0.0, 0, {}
    while not done:
        if frames is not None:
            frames.append(env.render())
        obs, reward, done, info = env.step(agent.act(obs, t0=t == 0, eval_mode=eval_mode, **kwargs))
        ret, t = ret + reward, t + 1
    return ret, t, info


def run_episodes(env, agent, episodes: int, task: int | None = None) -> tuple[list, list, list]:
    """`episodes` evaluation episodes: their returns, lengths and final infos."""
    returns, lengths, infos = [], [], []
    for _ in range(episodes):
        ret, length, info = run_episode(env, agent, task=task)
        returns.append(ret)
        lengths.append(length)
        infos.append(info)
    return returns, lengths, infos


def return_stats(returns: list) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single episode) of episode returns: eval.csv's
    episode_reward and episode_reward_std, evaluation.json's mean_return and std_return."""
    t = torch.tensor(returns)
    return t.mean().item(), (t.std().item() if len(t) > 1 else 0.0)


def mean_over_tasks(results: dict, key: str) -> float:
    """The mean of `key` over a per_task result, each task counting once whatever its episode length."""
    return sum(r[key] for r in results.values()) / len(results)


def per_task(spec, evaluate_task) -> dict:
    """`evaluate_task(task_id)` for every task of a multi-task spec, by task name (in task-id order)."""
    return {name: evaluate_task(i) for i, name in enumerate(spec.tasks)}
