-- Side-by-side runs: one request (`--agents a,b` or the config's `compare:`) runs a member task
-- per agent, each on its own branch, and one comparison comment follows when the last ends.
--   agents: the agents a request asked to compare (a JSON list), on the request's task.
--   group_of: on a member, the task of the request it belongs to.
--   turns: how many model turns the agent took.
--   test_result / test_output: on a member, how the repository's `test` commands went on its
--   branch, and the end of what the failing one printed.
--   compared_at / compared_attempt / comparison_comment_id: when, by which attempt, and in
--   which comment the comparison was posted.
--   picked_pr: the pull request a `pick` command names.
ALTER TABLE tasks ADD COLUMN agents jsonb;
ALTER TABLE tasks ADD COLUMN group_of text;
ALTER TABLE tasks ADD COLUMN turns integer;
ALTER TABLE tasks ADD COLUMN test_result text;
ALTER TABLE tasks ADD COLUMN test_output text;
ALTER TABLE tasks ADD COLUMN compared_at timestamptz;
ALTER TABLE tasks ADD COLUMN compared_attempt integer;
ALTER TABLE tasks ADD COLUMN comparison_comment_id bigint;
ALTER TABLE tasks ADD COLUMN picked_pr integer;
CREATE INDEX tasks_by_group ON tasks (group_of) WHERE group_of IS NOT NULL;
