"""SQLite persistence: migrations, the hash-chained journal, repositories, outbox, secrets."""
