"""The planner's parts; ``scheduler.planner`` is the way in (docs/scheduling.md)."""
