-- Placeholder so that 008 (exits) applies on this branch: 006 belongs to another branch's
-- migration. Delete this file when merging that one (the numbering check fails loudly if both stay).
SELECT 1;
