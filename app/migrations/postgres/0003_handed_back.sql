-- handed_back: of a task's starts, those a worker asked to stop handed back to the queue (a
-- deploy, a scale-down). They do not count against ASYNC_CODE_MAX_ATTEMPTS: only starts whose
-- worker died do.
ALTER TABLE tasks ADD COLUMN handed_back integer NOT NULL DEFAULT 0;
