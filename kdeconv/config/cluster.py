"""Options shared by every command that runs on Dask."""

from __future__ import annotations

from pydantic import Field, model_validator

from kdeconv.config import StrictModel


class ClusterConfig(StrictModel):
    scheduler_address: str | None = None
    scheduler_file: str | None = None
    workers: int | None = Field(default=None, ge=1)
    threads_per_worker: int | None = Field(default=None, ge=1)
    # Seconds to wait for a remote scheduler (the whole handshake) before giving up with exit 2.
    connect_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # Seconds a remote scheduler may take to have its first worker (jobs queued on a cluster).
    worker_timeout: float = Field(default=120.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_kind(self):
        remote = [x for x in (self.scheduler_address, self.scheduler_file) if x]
        if len(remote) > 1:
            raise ValueError("give --scheduler-address or --scheduler-file, not both")
        if remote and (self.workers or self.threads_per_worker):
            raise ValueError("--workers/--threads-per-worker only apply to a local cluster")
        return self
