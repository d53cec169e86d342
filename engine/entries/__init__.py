"""Entries: open a position with its stop as one act (engine/entries/service.py), size and price
it (sizing.py), refuse it by the risk gates (gates.py), roll it back when the stop cannot rest."""
