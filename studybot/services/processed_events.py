"""Events already handled. Slack redelivers an event it thinks we missed (X-Slack-Retry-Num); each
event id is acted on once, across every web process, because the database's primary key decides."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from studybot.db.engine import Database
from studybot.db.models import ProcessedEvent
from studybot.time_source import Clock


class ProcessedEvents:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock

    def first_time(self, event_id: str) -> bool:
        """Record ``event_id``; True the first time it is seen, False for a redelivery."""
        try:
            with self.db.session() as s:
                s.add(ProcessedEvent(event_id=event_id, received_at=self.clock.now()))
        except IntegrityError:
            return False
        return True
