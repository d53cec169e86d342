"""Domain values, ids, events and states. Imports nothing of ours outside this package."""
