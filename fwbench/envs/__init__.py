"""Environments for reinforcement-learning tasks: each as a gymnasium.Env and a batched twin.

Importing this package registers Catch with gymnasium (the rules as keyword arguments):
`gymnasium.make("fwbench/Catch-v0", N=24, M=5)` for one game and
`gymnasium.make_vec("fwbench/Catch-v0", num_envs=16)` for the batched twin. Without importing
fwbench first, name the module in the id: `gymnasium.make("fwbench.envs:fwbench/Catch-v0")`.
"""

import gymnasium

CATCH_ID = "fwbench/Catch-v0"

# string entry points: registering imports neither torch nor the environments themselves
if CATCH_ID not in gymnasium.registry:
    gymnasium.register(id=CATCH_ID, entry_point="fwbench.envs.catch_gym:CatchGymEnv",
                       vector_entry_point="fwbench.envs.catch_gym:CatchVectorEnv")
