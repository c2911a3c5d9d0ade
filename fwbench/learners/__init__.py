"""Learner registry: the training loops, one per kind of learning."""

from fwbench.registry import Registry

LEARNERS = Registry("learner")
LEARNERS.add("supervised", "fwbench.learners.supervised:SupervisedLearner")
LEARNERS.add("a2c", "fwbench.learners.a2c:A2CLearner")
