-- Tasks run as jobs of the queue (runner/queue.py): how many times a task was started, and
-- the queue's job that runs it, by which `cancel` reaches it.
--
-- attempt: 0 until a worker first starts the task, then one more at each start; a task whose
-- worker stopped is started again up to ASYNC_CODE_MAX_ATTEMPTS times.
-- job_id: procrastinate_jobs.id of the task's run job (no foreign key: the queue's schema
-- is applied after this one, and its finished jobs may be deleted).
ALTER TABLE tasks
    ADD COLUMN attempt integer NOT NULL DEFAULT 0,
    ADD COLUMN job_id bigint;
