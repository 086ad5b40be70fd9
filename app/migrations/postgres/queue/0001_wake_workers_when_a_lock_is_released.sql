-- The job queue announces a job when it is inserted, and workers that found nothing runnable
-- sleep until the next announcement or their polling interval. A job held back by its lock
-- (the next task on the same issue or pull request) becomes runnable when the job holding the
-- lock ends, which nothing announced: it waited out a worker's poll. Announce it then, in the
-- message workers already listen for.
CREATE FUNCTION async_code_announce_released_lock() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = async_code, pg_catalog
AS $$
DECLARE
    payload text;
BEGIN
    IF OLD.status = 'doing' AND NEW.status <> 'doing' AND NEW.lock IS NOT NULL
       AND EXISTS (SELECT 1 FROM procrastinate_jobs
                   WHERE lock = NEW.lock AND status = 'todo' AND id <> NEW.id) THEN
        payload := json_build_object('type', 'job_inserted', 'job_id', NEW.id)::text;
        PERFORM pg_notify('procrastinate_queue_v1#' || NEW.queue_name, payload);
        PERFORM pg_notify('procrastinate_any_queue_v1', payload);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER async_code_announce_released_lock
    AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW EXECUTE FUNCTION async_code_announce_released_lock();
