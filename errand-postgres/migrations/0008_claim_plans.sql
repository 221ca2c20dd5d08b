-- errand schema version 8: the claim's plan does not depend on statistics. A claim's LIMIT is
-- a function call (`claimable`), which the planner cannot read: it assumes a tenth of the
-- matching rows. With statistics older than a bulk enqueue that is tens of thousands of rows,
-- and it chose a bitmap scan of the whole queue and a sort spilling to disk (425 ms against
-- 8.7 ms once analysed), or a sequential scan of the table to join the ids back (191 ms). The
-- ids are chosen here, with the plans that cannot be worse than the index in claim order
-- switched off for this function alone; the claim matches them by primary key
-- (`id = ANY(ARRAY(...))`), which no estimate turns into a scan.
CREATE FUNCTION {schema}.claim_ids(queue text, want bigint, worker text, held bigint)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE ROWS 100
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
AS $$
BEGIN
    RETURN QUERY
        SELECT j.id FROM {schema}.jobs j
        WHERE j.state = 'available' AND j.queue = claim_ids.queue
        ORDER BY j.priority, j.run_at, j.id
        LIMIT {schema}.claimable(claim_ids.queue, want, worker, held)
        FOR UPDATE SKIP LOCKED;
END
$$;
