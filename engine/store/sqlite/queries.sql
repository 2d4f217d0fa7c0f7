-- Every statement of the SQLite store but its schema (schema.sql), by name; read by
-- engine/store/sqlite/sql.py. A {name} is filled in Python (sql.query), once, at import,
-- except where a docstring says otherwise; names ending _columns, _condition or _from are
-- fragments of other statements.

-- connection_pragmas --
-- Every connection of a process that writes: WAL, durable commits, a wait for the lock.
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
PRAGMA foreign_keys=ON;
PRAGMA busy_timeout=10000;
PRAGMA cache_size=-8192;

-- plan_synchronous --
PRAGMA synchronous=NORMAL;

-- plan_foreign_keys --
PRAGMA foreign_keys=OFF;

-- plan_temp_store --
PRAGMA temp_store=MEMORY;

-- begin_immediate --
BEGIN IMMEDIATE;

-- commit --
COMMIT;

-- rollback --
ROLLBACK;

-- probe_schema_version --
-- Reads the file's header: fails on a WAL database that cannot be read read-only.
PRAGMA schema_version;

-- schema_version --
SELECT value FROM meta WHERE key='schema';

-- insert_schema_version --
-- OR IGNORE: another process may be creating the database too.
INSERT OR IGNORE INTO meta VALUES ('schema', ?);

-- update_schema_version --
UPDATE meta SET value = ? WHERE key = 'schema';

-- webhook_key --
SELECT value FROM meta WHERE key = 'webhook_key';

-- insert_webhook_key --
INSERT INTO meta VALUES ('webhook_key', ?) ON CONFLICT (key) DO NOTHING;

-- campaign_by_name --
SELECT id, name, fingerprint, currency, planned_through, plan_complete
FROM campaigns WHERE name = ?;

-- campaign_names --
SELECT name FROM campaigns ORDER BY name;

-- insert_campaign --
INSERT INTO campaigns (name, fingerprint, path, currency, created_at)
VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING;

-- insert_rate_plan --
INSERT INTO rate_plans (campaign_id, id, prefix, routes) VALUES (?, ?, ?, ?);

-- rate_plans --
SELECT id, routes FROM rate_plans WHERE campaign_id = ?;

-- set_planned_through --
UPDATE campaigns SET planned_through = ? WHERE id = ?;

-- mark_plan_complete --
UPDATE campaigns SET plan_complete = 1 WHERE id = ?;

-- insert_worker --
INSERT INTO workers (id, campaign, host, boot_id, pid, pid_started, started_at, heartbeat_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- worker_heartbeat --
UPDATE workers SET heartbeat_at = ? WHERE id = ?;

-- delete_worker --
DELETE FROM workers WHERE id = ?;

-- delete_workers --
-- The workers of a JSON array of ids.
DELETE FROM workers WHERE id IN (SELECT value FROM json_each(?));

-- workers_of_campaign --
SELECT id, campaign, host, boot_id, pid, pid_started, started_at, heartbeat_at
FROM workers WHERE campaign = ?;

-- other_workers --
SELECT id, campaign, host, boot_id, pid, pid_started, started_at, heartbeat_at
FROM workers WHERE campaign = ? AND id != ?;

-- insert_planned --
-- {rows}: (campaign_id, 'pending', ?, ..., NULLIF(?, '')) tuples of plan_writer's columns.
INSERT INTO messages (campaign_id, state, {columns}) VALUES {rows}
ON CONFLICT (campaign_id, line) DO NOTHING;

-- insert_not_sent --
-- {rows}: (campaign_id, ?, ...) tuples of plan_writer's columns.
INSERT INTO messages (campaign_id, {columns}) VALUES {rows}
ON CONFLICT (campaign_id, line) DO NOTHING;

-- insert_planned_json --
-- The rows of a JSON array of arrays; {fields}: json_extract(value, '$[i]') of each column.
INSERT INTO messages (campaign_id, state, {columns})
SELECT ?, 'pending', {fields}, NULLIF({text_field}, '')
FROM json_each(?) WHERE true ON CONFLICT (campaign_id, line) DO NOTHING;

-- insert_not_sent_json --
INSERT INTO messages (campaign_id, {columns})
SELECT ?, {fields}
FROM json_each(?) WHERE true ON CONFLICT (campaign_id, line) DO NOTHING;

-- delete_campaign_messages --
DELETE FROM messages WHERE campaign_id = ?;

-- planned_numbers_page --
SELECT line, phone FROM messages WHERE campaign_id = ? AND state = 'pending'
AND line > ? ORDER BY line LIMIT ?;

-- last_line --
SELECT max(line) FROM messages WHERE campaign_id = ?;

-- create_maybe_duplicates --
CREATE TEMP TABLE maybe_duplicates (phone TEXT PRIMARY KEY) WITHOUT ROWID;

-- insert_maybe_duplicate --
INSERT OR IGNORE INTO temp.maybe_duplicates VALUES (?);

-- occurrences --
-- The pending rows in a range of lines whose number is among temp.maybe_duplicates.
SELECT line, phone, provider, country, segments, cost_nanos FROM messages
WHERE campaign_id = ? AND state = 'pending' AND line > ? AND line <= ?
      AND phone IN temp.maybe_duplicates
ORDER BY line;

-- mark_duplicate --
UPDATE messages SET state = 'skipped', reason = 'duplicate',
       detail = 'the same number as line ' || ?, provider = NULL, route = NULL,
       price_nanos = NULL, cost_nanos = NULL, plan_id = NULL
WHERE campaign_id = ? AND line = ?;

-- plan_counts --
SELECT state, reason, provider, country, count(*), coalesce(sum(segments), 0),
       coalesce(sum(cost_nanos), 0)
FROM messages WHERE campaign_id = ? GROUP BY state, reason, provider, country;

-- stored_texts_page --
SELECT line, text, variables, segments, price_nanos FROM messages
WHERE campaign_id = ? AND line > ? AND text IS NOT NULL
AND state NOT IN ('rejected', 'skipped') ORDER BY line LIMIT ?;

-- page --
-- The rows of SELECT {columns} {rest} as one JSON array (Store.page says why).
SELECT json_group_array(json(page_row)) FROM (SELECT json_array({columns}) AS page_row {rest});

-- outgoing_columns --
line, phone, text, encoding, segments, provider, route, price_nanos, cost_nanos, plan_id,
attempts, state, provider_message_id, updated_at, variables;

-- outgoing_from --
FROM messages WHERE campaign_id = ? AND state = ? AND line > ? ORDER BY line LIMIT ?;

-- outgoing_of_provider_from --
FROM messages WHERE campaign_id = ? AND state = ? AND line > ? AND provider = ?
ORDER BY line LIMIT ?;

-- pending_by_provider --
SELECT provider, count(*) FROM messages WHERE campaign_id = ? AND state = 'pending'
GROUP BY provider;

-- spent --
-- {states}: a ? for each state that spends.
SELECT coalesce(sum(coalesce(actual_cost_nanos, cost_nanos)), 0) FROM messages
WHERE campaign_id = ? AND state IN ({states});

-- state_counts --
SELECT state, provider, count(*), coalesce(sum(segments), 0),
       coalesce(sum(coalesce(actual_cost_nanos, cost_nanos)), 0)
FROM messages WHERE campaign_id = ? GROUP BY state, provider ORDER BY state, provider;

-- report_rows --
-- {only}: nothing, or AND state IN (?, ...) (per call: the states asked for).
SELECT coalesce(phone, phone_raw), line, state, provider, route, segments,
       coalesce(actual_cost_nanos, cost_nanos), provider_message_id,
       coalesce(reason || coalesce(': ' || detail, ''), detail), cost_nanos,
       delivery_state, delivery_status, delivery_reason, delivered_at,
       delivered_at - updated_at
FROM messages WHERE campaign_id = ? AND line > ?{only} ORDER BY line LIMIT 5000;

-- cached_rates --
SELECT fetched_at, rows FROM rate_cache WHERE provider = ?;

-- save_rates --
INSERT INTO rate_cache (provider, fetched_at, rows) VALUES (?, ?, ?)
ON CONFLICT (provider) DO UPDATE SET fetched_at = excluded.fetched_at, rows = excluded.rows;

-- eligible_from --
-- What a worker may claim: unheld messages of a provider in a state, in line order.
FROM messages WHERE campaign_id = ? AND state = ? AND provider = ? AND worker IS NULL
AND line > ? ORDER BY line LIMIT ?;

-- take --
-- Hold the lines of a JSON array that are still unheld in the state they were read in.
UPDATE messages SET state = ?, worker = ?
WHERE campaign_id = ? AND line IN (SELECT value FROM json_each(?))
AND state = ? AND worker IS NULL;

-- take_sending --
-- Hold the lines of a JSON array that are still unheld and pending, as sending (marked).
UPDATE messages SET state = 'sending', worker = ?, attempts = attempts + 1, updated_at = ?
WHERE campaign_id = ? AND line IN (SELECT value FROM json_each(?))
AND state = 'pending' AND worker IS NULL;

-- unsend --
-- A worker's sending messages of a JSON array of lines that it never sent: pending again,
-- their attempt uncounted.
UPDATE messages SET state = 'pending', worker = NULL, attempts = attempts - 1
WHERE campaign_id = ? AND state = 'sending' AND worker = ?
AND line IN (SELECT value FROM json_each(?));

-- kept_committed --
SELECT committed_nanos FROM campaigns WHERE id = ?;

-- set_committed --
UPDATE campaigns SET committed_nanos = ? WHERE id = ?;

-- add_committed --
-- The first ? is what the campaign's committed money is where it is not kept yet.
UPDATE campaigns SET committed_nanos = coalesce(committed_nanos, ?) + ? WHERE id = ?;

-- move_committed --
-- The checkpoint writer's: what settled messages move in committed money, once it is kept.
UPDATE campaigns SET committed_nanos = committed_nanos + ?
WHERE id = ? AND committed_nanos IS NOT NULL;

-- return_committed --
UPDATE campaigns SET committed_nanos = committed_nanos - ?
WHERE id = ? AND committed_nanos IS NOT NULL;

-- held_by_condition --
-- Held by one of the workers of a JSON array of ids, or by nobody.
(worker IN (SELECT value FROM json_each(?)) OR worker IS NULL);

-- held_by_worker_condition --
worker = ?;

-- held_by_workers_condition --
-- Held by one of the workers of a JSON array of ids.
worker IN (SELECT value FROM json_each(?));

-- held_count --
-- {held_by}: who holds them (held_by_condition, or worker = ?), {lines}: nothing, or
-- lines_condition.
SELECT count(*), coalesce(sum(cost_nanos), 0)
FROM messages WHERE campaign_id = ? AND state = ? AND {held_by}{lines};

-- unclaim --
UPDATE messages SET state = ?, worker = NULL
WHERE campaign_id = ? AND state = ? AND {held_by}{lines};

-- unhold --
UPDATE messages SET worker = NULL WHERE campaign_id = ? AND state = ? AND {held_by}{lines};

-- interrupt_sending --
UPDATE messages SET state = ?, reason = 'interrupted',
       detail = 'the worker sending it stopped while it was being sent', worker = NULL
WHERE campaign_id = ? AND state = ? AND {held_by};

-- lines_condition --
-- Lines of a JSON array; after another condition.
line IN (SELECT value FROM json_each(?));

-- held_by_others_from --
-- {states}: a ? for each held state.
FROM messages WHERE campaign_id = ? AND state IN ({states})
AND worker IS NOT NULL AND worker != ?;

-- settle --
-- Only a row the worker still holds is written (worker IS ?: a writer without a worker id
-- writes rows held by nobody); it stays held only where it stays claimed.
UPDATE messages SET {assignments}, worker = iif(? = 'claimed', worker, NULL)
WHERE campaign_id = ? AND line = ? AND worker IS ?;

-- mark_sending --
UPDATE messages SET state = 'sending', attempts = attempts + 1, updated_at = ?
WHERE campaign_id = ? AND line = ? AND worker IS ?;

-- insert_report --
INSERT INTO delivery_reports (provider, provider_message_id, state, provider_status,
       reason, at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, provider_message_id, state) DO NOTHING;

-- unapplied --
-- The newest stored reports in {states} not applied yet, {limit} at most.
(SELECT provider, provider_message_id, state, provider_status, reason, at, received_at
 FROM delivery_reports WHERE applied = 0 AND state IN ({states})
 ORDER BY received_at DESC LIMIT {limit});

-- apply_progress --
-- {unapplied}: the non-final reports (accepted, unknown).
UPDATE messages SET delivery_state = r.state, delivery_status = r.provider_status
FROM {unapplied} AS r
WHERE messages.provider = r.provider AND messages.provider_message_id = r.provider_message_id
AND messages.state = 'accepted'
AND coalesce(messages.delivery_reason, '') <> '{unknown_delivery}';

-- apply_final --
-- {unapplied}: the final reports; the first final one wins.
UPDATE messages SET
    state = CASE r.state WHEN 'delivered' THEN 'delivered' ELSE 'undelivered' END,
    delivery_state = r.state, delivery_status = r.provider_status,
    delivered_at = CASE r.state WHEN 'delivered' THEN coalesce(r.at, r.received_at) END,
    delivery_reason = CASE r.state WHEN 'delivered' THEN NULL WHEN 'expired' THEN 'expired'
        ELSE coalesce(nullif(r.reason, ''), r.provider_status) END
FROM {unapplied} AS r
WHERE messages.provider = r.provider AND messages.provider_message_id = r.provider_message_id
AND messages.state = 'accepted';

-- mark_applied --
UPDATE delivery_reports SET applied = 1 WHERE applied = 0 AND EXISTS (SELECT 1 FROM
messages AS m WHERE m.provider = delivery_reports.provider
AND m.provider_message_id = delivery_reports.provider_message_id
AND m.state IN ('accepted', 'delivered', 'undelivered'));

-- unapplied_count --
SELECT count(*) FROM delivery_reports WHERE applied = 0;

-- awaiting_report_condition --
-- A sent message whose delivery report is still to come.
state = 'accepted' AND coalesce(delivery_reason, '') <> '{unknown_delivery}';

-- delivery_groups --
SELECT provider, country, state, delivery_reason, count(*), coalesce(sum(cost_nanos), 0),
       coalesce(sum(coalesce(actual_cost_nanos, cost_nanos)), 0)
FROM messages WHERE campaign_id = ? AND state IN ('accepted', 'delivered', 'undelivered')
GROUP BY provider, country, state, delivery_reason;

-- delivered_latency_count --
SELECT count(*) FROM messages WHERE campaign_id = ? AND state = 'delivered'
AND delivered_at IS NOT NULL AND updated_at IS NOT NULL;

-- delivered_latency_at --
-- The latency at an offset in ascending order (a quantile).
SELECT delivered_at - updated_at FROM messages WHERE campaign_id = ? AND state = 'delivered'
AND delivered_at IS NOT NULL AND updated_at IS NOT NULL ORDER BY 1 LIMIT 1 OFFSET ?;

-- awaiting_columns --
line, provider_message_id, coalesce(updated_at, 0);

-- awaiting_from --
FROM messages WHERE campaign_id = ? AND {awaiting} AND provider = ?
AND line > ? AND provider_message_id IS NOT NULL ORDER BY line LIMIT ?;

-- accepted_by_provider --
SELECT provider, count(*) FROM messages WHERE campaign_id = ? AND state = 'accepted'
GROUP BY provider;

-- given_up_by_provider --
SELECT provider, count(*) FROM messages INDEXED BY messages_unknown_delivery
WHERE campaign_id = ? AND delivery_reason = '{unknown_delivery}'
AND state = 'accepted' GROUP BY provider;

-- oldest_awaiting --
SELECT min(updated_at) FROM messages WHERE campaign_id = ? AND {awaiting};

-- expire --
UPDATE messages SET delivery_state = 'unknown', delivery_reason = '{unknown_delivery}'
WHERE campaign_id = ? AND {awaiting} AND updated_at < ?;

-- report_columns --
-- A row of the HTML report's table (report_reads.TableRow).
line, coalesce(phone, phone_raw), country, state, provider, segments,
coalesce(actual_cost_nanos, cost_nanos),
CASE WHEN state = 'delivered' THEN delivered_at - updated_at END,
coalesce(delivery_reason, reason || coalesce(': ' || detail, ''), detail);

-- failed_condition --
-- A message that did not reach its recipient, or whose fate is not known.
(state IN ({states}) OR (state = 'accepted' AND delivery_reason = '{unknown_delivery}'));

-- sent_span --
SELECT min(updated_at), max(updated_at), max(delivered_at) FROM messages
WHERE campaign_id = ? AND state IN ({states});

-- sent_timeline --
SELECT CAST((updated_at - ?) / ? AS INTEGER) AS b, count(*) FROM messages
WHERE campaign_id = ? AND state IN ({states}) AND updated_at IS NOT NULL GROUP BY b;

-- delivered_timeline --
SELECT CAST((delivered_at - ?) / ? AS INTEGER) AS b, count(*) FROM messages
WHERE campaign_id = ? AND state = 'delivered' AND delivered_at IS NOT NULL GROUP BY b;

-- delivered_latency_floor_at --
-- As delivered_latency_at, never below 0.
SELECT max(0, delivered_at - updated_at) FROM messages WHERE campaign_id = ?
AND state = 'delivered' AND delivered_at IS NOT NULL AND updated_at IS NOT NULL
ORDER BY 1 LIMIT 1 OFFSET ?;

-- latency_histogram --
SELECT min(CAST(max(0, delivered_at - updated_at) / ? AS INTEGER), ?) AS b, count(*)
FROM messages WHERE campaign_id = ? AND state = 'delivered'
AND delivered_at IS NOT NULL AND updated_at IS NOT NULL GROUP BY b;

-- failures --
SELECT CASE WHEN state = 'accepted' THEN 'unknown' ELSE state END, provider,
       coalesce(delivery_reason, reason, delivery_status, state), count(*)
FROM messages WHERE campaign_id = ? AND {failed} GROUP BY 1, 2, 3;

-- featured_rows --
-- {where}: state IN (?, ...) (per call) or failed_condition.
SELECT {columns} FROM messages WHERE campaign_id = ? AND {where} ORDER BY line LIMIT ?;

-- sampled_rows --
SELECT {columns} FROM messages WHERE campaign_id = ? AND NOT {failed}
AND line % ? = 0 ORDER BY line LIMIT ?;

-- count_failed --
SELECT count(*) FROM messages WHERE campaign_id = ? AND {failed};

-- count_not_failed --
SELECT count(*) FROM messages WHERE campaign_id = ? AND NOT {failed};

-- rate_shares_of --
-- Rate shares (engine/store/sqlite/rate_shares.py) from here on.
-- Every stored share of a provider (engine.store.rate_shares.RateShare's order).
SELECT provider, holder, host, boot_id, pid, pid_started, joined_at, share, counted,
       counted_until, seen_at, ended, wants, demand
FROM rate_shares WHERE provider = ? ORDER BY holder;

-- upsert_rate_share --
INSERT INTO rate_shares (provider, holder, host, boot_id, pid, pid_started, joined_at, share,
                         counted, counted_until, seen_at, ended, wants, demand)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, holder) DO UPDATE SET share = excluded.share,
    counted = excluded.counted, counted_until = excluded.counted_until,
    seen_at = excluded.seen_at, ended = excluded.ended, wants = excluded.wants,
    demand = excluded.demand;

-- delete_rate_share --
DELETE FROM rate_shares WHERE provider = ? AND holder = ?;
