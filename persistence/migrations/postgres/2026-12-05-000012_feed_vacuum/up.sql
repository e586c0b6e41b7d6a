-- Every change row is inserted unpositioned and then positioned by the sequencer, which
-- leaves a dead entry in the partial index of unpositioned rows until the table is vacuumed;
-- the sequencer walks those dead entries on every tick. PostgreSQL's default waits for 20% of
-- the table to change (300,000 rows at 1.5 million), so vacuum the feed after every 10,000
-- changed rows instead.
ALTER TABLE directory_changes SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
