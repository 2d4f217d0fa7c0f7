"""Admission: whether a message a worker took may be sent now.

Asked once per message, just before its request (:meth:`Admission._admit`). Today it says no
when the run is stopping (the message is left for a later run) or its lane is down (the
message moves to its next route). The budget is not checked here: a claim reserves each
message's estimated cost against ``max_cost`` in the store
(:meth:`engine.store.protocols.Outbox.claim`), so that every worker of the campaign keeps
to one budget, and what was claimed fits.

This is the seam where send windows go next (a campaign's hours, a country's quiet hours):
a message outside its window would be left, or held until it opens, here, without the
feeder or the sender knowing why. Anything added here runs once per message on the hot
path; keep it to attribute reads and comparisons (``bench/dispatcher_overhead.py``).
"""

from __future__ import annotations

from engine.send.jobs import Job
from engine.send.lanes import Lane
from engine.send.settling import Settling


class Admission(Settling):
    """The dispatcher's admission part. A job refused here is settled (left or moved), so a
    worker simply goes on to its next job."""

    def _admit(self, lane: Lane, job: Job) -> bool:
        """Whether *job* may be sent now; if not, it is left or moved. Either way a job fed
        from *lane*'s backlog gives its slot back."""
        if job.fed:
            lane.backlog.release()
            job.fed = False
        if self.stopping:
            self._leave(lane, job)
            return False
        if lane.down:
            lane.queued.discard(job.line)
            self._spawn(self._fail_over, job, f"{lane.name} stopped: {lane.down}", True)
            return False
        return True
