-- The task store: the same tables as the SQLite store (app/store.py), in schema async_code.
-- `async-code migrate` runs this once, in one transaction, with search_path set to async_code.
--
-- Nothing here is for the Data API: `migrate` takes every privilege on the schema away from
-- PUBLIC and Supabase's anon and authenticated roles, and every table has row level security
-- with no policy, so even a privilege granted by mistake shows no row.

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE deliveries (
    guid        text PRIMARY KEY,
    event       text NOT NULL,
    action      text,
    received_at timestamptz NOT NULL
);

CREATE TABLE tasks (
    id                  text PRIMARY KEY,
    -- The order tasks were recorded in, where the SQLite store uses its rowid.
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    delivery_guid       text NOT NULL REFERENCES deliveries (guid),
    -- pending -> running -> completed | failed; rejected and cancelled end it before it runs.
    status              text NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'rejected', 'cancelled')),
    trigger             text NOT NULL,
    repo                text NOT NULL,
    installation_id     bigint NOT NULL,
    number              bigint NOT NULL,
    comment_id          bigint,
    instruction         text NOT NULL,
    issue_title         text NOT NULL DEFAULT '',
    issue_body          text NOT NULL DEFAULT '',
    issue_author        text NOT NULL DEFAULT '',
    requested_by        text NOT NULL,
    requested_by_id     bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    acknowledged_at     timestamptz,
    started_at          timestamptz,
    finished_at         timestamptz,
    status_comment_id   bigint,
    branch              text,
    -- What the run left: the agent's output, the sandbox's exit code and container, why it
    -- failed, the diff (patches), the conversation and the files it changed.
    output              text,
    exit_code           integer,
    container_id        text,
    error               text,
    patches             jsonb,
    chat_history        jsonb,
    commit_sha          text,
    changed_files       jsonb,
    input_tokens        bigint,
    output_tokens       bigint,
    pr_url              text,
    pr_number           bigint,
    claimed_by          text,
    heartbeat_at        timestamptz,
    command             text,
    problem             text,
    base_branch         text,
    draft               boolean NOT NULL DEFAULT false,
    label               text,
    review_context      jsonb,
    retry_of            text,
    start_sha           text,
    cancel_requested_by text,
    target_task         text,
    check_run_id        bigint,
    pushed_check_run_id bigint,
    cache_write_tokens  bigint,
    cache_read_tokens   bigint,
    cost_usd            double precision,
    stop_reason         text,
    model               text,
    agent               text,
    agent_version       text
);
CREATE INDEX tasks_by_status ON tasks (status, created_at);
-- One task per comment: a replayed delivery under a new GUID cannot start the work again.
CREATE UNIQUE INDEX one_task_per_comment ON tasks (repo, trigger, comment_id)
    WHERE comment_id IS NOT NULL;
CREATE INDEX tasks_by_issue ON tasks (repo, number, status);

-- created_at is the database's clock when the task is recorded, and never changes;
-- updated_at is the time of the last change.
CREATE FUNCTION keep_task_times() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.created_at := now();
    ELSE
        NEW.created_at := OLD.created_at;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER keep_task_times BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION keep_task_times();

-- What GitHub said about the App's installations, in the order it arrived.
CREATE TABLE installation_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_guid   text NOT NULL REFERENCES deliveries (guid),
    installation_id bigint NOT NULL,
    repo            text,  -- NULL: the whole installation
    action          text NOT NULL,
    received_at     timestamptz NOT NULL
);
CREATE INDEX installation_events_by_id ON installation_events (installation_id, repo);

-- Each button of a task works once, whichever of its check runs shows it: a redelivered or
-- replayed press starts nothing. A refused press is taken back, so it uses up nothing.
CREATE TABLE pressed_buttons (
    task_id      text NOT NULL,
    action       text NOT NULL,
    check_run_id bigint NOT NULL,
    command_task text NOT NULL,
    PRIMARY KEY (task_id, action)
);

ALTER TABLE meta ENABLE ROW LEVEL SECURITY;
ALTER TABLE deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE installation_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE pressed_buttons ENABLE ROW LEVEL SECURITY;
