-- errand schema version 12: claims that do not walk what a held snapshot keeps.
--
-- A transaction left open (or a long REPEATABLE READ reader) keeps every row version since
-- its snapshot, and the claim index keeps an entry for each: every job claimed since then
-- leaves one at the front of its queue, and a claim in index order walks all of them before
-- it reaches a job it can take (measured: 13 ms per claim after 45 s at 1,500 jobs/s, the
-- queue falling behind within two minutes). `claim_ids_from` starts the walk at a floor the
-- claiming process learned from its previous claims (errand-postgres `claim.rs`): jobs of a
-- more urgent priority than the floor's are walked from the start as before (priority is
-- never delayed), the rest from `(f_priority, f_run_at, f_id)` on. The process claims from
-- the start again at least once a second, so a job that became available below the floor
-- (a retry by hand of an old job, a promotion later than the margin) waits at most that.
CREATE FUNCTION {schema}.claim_ids_from(queue text, want bigint, worker text, held bigint,
                                        f_priority smallint, f_run_at timestamptz, f_id bigint)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE ROWS 100
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
AS $$
DECLARE
    n bigint := {schema}.claimable(claim_ids_from.queue, want, worker, held);
    got bigint;
BEGIN
    IF n <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT j.id FROM {schema}.jobs j
        WHERE j.state = 'available' AND j.queue = claim_ids_from.queue
          AND j.priority < f_priority
        ORDER BY j.priority, j.run_at, j.id
        LIMIT n
        FOR UPDATE SKIP LOCKED;
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < n THEN
        RETURN QUERY
            SELECT j.id FROM {schema}.jobs j
            WHERE j.state = 'available' AND j.queue = claim_ids_from.queue
              AND (j.priority, j.run_at, j.id) >= (f_priority, f_run_at, f_id)
            ORDER BY j.priority, j.run_at, j.id
            LIMIT n - got
            FOR UPDATE SKIP LOCKED;
    END IF;
END
$$;

-- Vacuum the jobs table by the number of dead rows, not by a fraction of its size: the
-- default (20 % of the table) waits for millions of dead rows when a day of finished jobs is
-- kept, and the indexes the claims and outcomes use fill with dead entries meanwhile. The
-- same for inserted rows (visibility map, index-only scans of counts). No cost delay: the
-- table is written all day, and a vacuum that sleeps falls behind it.
ALTER TABLE {schema}.jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 50000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.02
);
