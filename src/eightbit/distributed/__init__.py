"""Translation past one machine: shards of length-sorted batches on Ray actors, resumable.

Ray is optional (``pip install 'eightbit[ray]'``) and imported only when a run starts.
"""

from eightbit.distributed.plan import ShardSettings, plan_shards, run_key
from eightbit.distributed.ray_pool import (
    RayConnectionError,
    RayNotInstalledError,
    RayOptions,
    ShardFailedError,
)
from eightbit.distributed.sharded import RunStats, translate_file_on_ray, translate_on_ray
from eightbit.distributed.store import ShardStore, WorkDirError, work_dir_for

__all__ = [
    "RayConnectionError",
    "RayNotInstalledError",
    "RayOptions",
    "RunStats",
    "ShardFailedError",
    "ShardSettings",
    "ShardStore",
    "WorkDirError",
    "plan_shards",
    "run_key",
    "translate_file_on_ray",
    "translate_on_ray",
    "work_dir_for",
]
