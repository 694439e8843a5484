"""A user's own task family, as a package outside policygradex would define it (issue 16).

``tests/userfamily`` on the path makes it importable as ``pgx_userfamily:cartpoles`` (``--family
pgx_userfamily:cartpoles``), and its ``pgx_userfamily-0.1.dist-info`` declares the same family as an
installed package does, in the ``policygradex.families`` entry-point group (``--family
user-cartpoles-ep``). The environments are Gymnasium's real CartPole-v1.
"""

from __future__ import annotations

from policygradex import tasks

PARAMS = [
    {"length": 0.5, "force_mag": 10.0},
    {"length": 0.8, "force_mag": 10.0},
    {"length": 0.5, "force_mag": -10.0},  # the actuator wired the other way: conflicts with the first two
]


def cartpoles(name: str = "user-cartpoles") -> tasks.TaskFamily:
    """Three CartPole-v1 tasks; the budgets come from the rule of ``from_gymnasium``."""
    return tasks.from_gymnasium("CartPole-v1", params=PARAMS, name=name, set_attributes=True,
                                task_names=["short", "long", "reversed"])


def cartpoles_ep() -> tasks.TaskFamily:
    """The same family under the name its entry point declares."""
    return cartpoles("user-cartpoles-ep")


NOT_CALLABLE = 42


def wrong_type() -> str:
    return "not a family"


def clash() -> tasks.TaskFamily:
    return cartpoles("cartpole-10")  # the name of a built-in family


def broken() -> tasks.TaskFamily:
    raise RuntimeError("the simulator is not installed")
