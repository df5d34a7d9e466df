"""Shards: N processes (or machines) that share one run folder, each doing every N-th unit.
"""


import os
import re

from dgn.errors import DgnError


SHARD_ENV = (("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),      # a SLURM job array (--array=0-N)
             ("JOB_COMPLETION_INDEX", "DGN_SHARD_COUNT"),            # a Kubernetes Indexed Job (count passed in)
             ("DGN_SHARD_INDEX", "DGN_SHARD_COUNT"))                 # anything else


def auto_shard(env=None):
    """(I, N) from a job-array scheduler's environment: SLURM's ``SLURM_ARRAY_TASK_ID`` (less
    ``SLURM_ARRAY_TASK_MIN`` when the array does not start at 0) and ``SLURM_ARRAY_TASK_COUNT``; a
    Kubernetes Indexed Job's ``JOB_COMPLETION_INDEX`` with its completions count passed in as
    ``DGN_SHARD_COUNT``; or ``DGN_SHARD_INDEX`` / ``DGN_SHARD_COUNT``.

    Raises:
        DgnError: none of them set, or not numbers (one line naming them)."""
    env = os.environ if env is None else env
    for index_key, count_key in SHARD_ENV:
        if env.get(index_key, "").strip() and not env.get(count_key, "").strip():
            raise DgnError(f"--shard auto: {index_key} is set but not {count_key}, the number of shards; set it "
                           f"(for a Kubernetes Indexed Job: to its completions)")
        if env.get(index_key, "").strip() and env.get(count_key, "").strip():
            try:
                index, count = int(env[index_key]), int(env[count_key])
                if index_key == "SLURM_ARRAY_TASK_ID":
                    index -= int(env.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
            except ValueError:
                raise DgnError(f"--shard auto: {index_key}={env[index_key]!r} and {count_key}={env[count_key]!r} "
                               f"must be integers") from None
            if count < 1 or not 0 <= index < count:
                raise DgnError(f"--shard auto: {index_key}={env[index_key]} and {count_key}={env[count_key]} give shard "
                               f"{index} of {count}; the index must be 0..{count - 1}")
            return index, count
    raise DgnError("--shard auto: no shard in the environment; set SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT "
                   "(a SLURM array), JOB_COMPLETION_INDEX and DGN_SHARD_COUNT (a Kubernetes Indexed Job), or "
                   "DGN_SHARD_INDEX and DGN_SHARD_COUNT; or give --shard I/N")


def parse_shard(text):
    """``I/N`` (I counts from 0) -> (I, N); ``auto``: :func:`auto_shard`."""
    if text is None:
        return None
    if str(text).strip().lower() == "auto":
        return auto_shard()
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise DgnError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise DgnError(f"--shard {text!r}: I counts from 0, so I must be 0..{max(count - 1, 0)} "
                       f"(and N >= 1), e.g. --shard 0/{max(count, 1)}")
    return index, count


def shard_of(classes, shard):
    """Shard I of N: every N-th class of the sorted selection, starting at the I-th. The N shards of one
    selection are disjoint and cover it; every process must get the same --classes."""
    if shard is None:
        return list(classes)
    index, count = shard
    return list(classes)[index::count]
