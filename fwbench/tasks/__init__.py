"""Task registry: one line per task (name, "module:Class", optional default overrides).

Tasks of other packages come from the entry-point group `fwbench.tasks` or are named as
`package.module:Class` (see `fwbench.registry`); `check_task` is the contract they must meet.
"""

from fwbench.registry import Registry


def check_task(cls) -> str | None:
    """What makes `cls` break the task contract (fwbench.tasks.base), or None."""
    import dataclasses

    from fwbench.tasks.base import EpisodicTask, SupervisedTask

    if not (isinstance(cls, type) and issubclass(cls, (SupervisedTask, EpisodicTask))):
        return "is not a task: subclass fwbench.tasks.base.SupervisedTask or EpisodicTask"
    if not dataclasses.is_dataclass(cls.Config):
        return "has no settings dataclass: subclass fwbench.tasks.base.TaskConfig"
    return None


TASKS = Registry("task", group="fwbench.tasks", check=check_task)
TASKS.add("retrieval", "fwbench.tasks.retrieval:Retrieval")
TASKS.add("catch", "fwbench.tasks.catch:Catch")
TASKS.add("mnist", "fwbench.tasks.mnist:Mnist")
TASKS.add("faces", "fwbench.tasks.faces:Faces")
