"""Real dialogue data: one record schema, loaders for PEARL, ReDial, INSPIRED and IARD, the
MovieLens item catalogue, action annotation, personas and target attributes."""

from interplay.data.schema import DialogueRecord, Outcome, RecordTurn

__all__ = ["DialogueRecord", "Outcome", "RecordTurn"]
