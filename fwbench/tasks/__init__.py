"""Task registry: one line per task (name, "module:Class", optional default overrides)."""

from fwbench.registry import Registry

TASKS = Registry("task")
TASKS.add("retrieval", "fwbench.tasks.retrieval:Retrieval")
TASKS.add("catch", "fwbench.tasks.catch:Catch")
TASKS.add("mnist", "fwbench.tasks.mnist:Mnist")
TASKS.add("faces", "fwbench.tasks.faces:Faces")
