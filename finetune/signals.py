"""Signals other apps listen to, so the job module need not know who reacts.

`job_changed(job_id, change)` is sent inside `transaction.on_commit` after a
user's (or the platform's own) operation on a job took effect; `change` is a
`Change`. The scheduler reacts: an admission pass after the changes that move the
queue, a workload teardown after a stop or a delete, the teardown and then the move
back to the queue after a requeue an operator asked for.

`job_status_changed(job_id, from_status, to_status, event_id)` is sent on commit by
the state machine (finetune/states.py) after every move it made, whoever asked for
it; `event_id` is the JobEvent that records the move, one per move, so a listener
can tell a second start after a requeue from the same start announced twice.
`model_version_created(version_id)` is sent on commit after `add_version` added a
version (a job's model, a merge). The webhooks listen (webhooks/receivers.py).
"""

from enum import StrEnum

from django.dispatch import Signal


class Change(StrEnum):
    CREATED = "created"
    PRIORITY = "priority"
    DURATION = "duration"
    STOPPED = "stopped"
    DELETED = "deleted"
    REQUEUE = "requeue"  # an operator asked to put a running job back in the queue
    REQUEUED = "requeued"  # it is back in the queue
    DATA_READY = "data_ready"  # its data was found good: the planner may place it now


# After these the queue may move: an admission pass follows at once.
MOVES_THE_QUEUE = frozenset(
    {Change.CREATED, Change.PRIORITY, Change.DURATION, Change.STOPPED, Change.DELETED}
    | {Change.REQUEUED, Change.DATA_READY}
)
# After these the job's workload, if any, is torn down.
ENDS_THE_WORKLOAD = frozenset({Change.STOPPED, Change.DELETED})

job_changed = Signal()
job_status_changed = Signal()
model_version_created = Signal()
