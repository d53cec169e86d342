"""Split text into Telegram-sized messages on line boundaries (hard-cut only a giant line)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LIMIT = 4096


def split_message(text: str, limit: int = LIMIT) -> list[str]:
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:  # a single line longer than a message
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


@dataclass(frozen=True, slots=True)
class Chunk:
    """One message made of several texts: `parts[i]` is how many pieces of text `i` it carries,
    `done` the texts whose last piece it carries (delivered once this chunk is)."""

    text: str
    parts: dict[int, int]
    done: tuple[int, ...]


def pack(texts: Sequence[Sequence[str]], limit: int = LIMIT) -> list[Chunk]:
    """Join texts (each already split into pieces of at most `limit`) into as few messages as
    possible, one text per line group, cutting only between pieces: a text never straddles two
    messages unless it is longer than one message by itself."""
    chunks: list[Chunk] = []
    lines: list[str] = []
    size = 0
    parts: dict[int, int] = {}
    done: list[int] = []
    for index, pieces in enumerate(texts):
        for n, piece in enumerate(pieces):
            if lines and size + 1 + len(piece) > limit:
                chunks.append(Chunk("\n".join(lines), parts, tuple(done)))
                lines, size, parts, done = [], 0, {}, []
            size += len(piece) + (1 if lines else 0)
            lines.append(piece)
            parts[index] = parts.get(index, 0) + 1
            if n == len(pieces) - 1:
                done.append(index)
    if lines:
        chunks.append(Chunk("\n".join(lines), parts, tuple(done)))
    return chunks
