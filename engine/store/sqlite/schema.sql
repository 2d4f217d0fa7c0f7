-- The SQLite store's schema and its upgrades: named statements in the format of
-- queries.sql (engine/store/sqlite/sql.py reads both).

-- schema --
-- Every table and index, created where missing (a script: its first statement, the meta
-- table, is run alone first, to read the version before upgrading).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    path TEXT NOT NULL,
    currency TEXT NOT NULL,
    created_at REAL NOT NULL,
    planned_through INTEGER NOT NULL DEFAULT 0,
    plan_complete INTEGER NOT NULL DEFAULT 0,
    committed_nanos INTEGER
);
CREATE TABLE IF NOT EXISTS rate_plans (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    id INTEGER NOT NULL,
    prefix TEXT NOT NULL,
    routes TEXT NOT NULL,
    PRIMARY KEY (campaign_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    line INTEGER NOT NULL,
    phone_raw TEXT,
    phone TEXT,
    country TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    text TEXT,
    encoding TEXT,
    segments INTEGER,
    provider TEXT,
    route TEXT,
    price_nanos INTEGER,
    cost_nanos INTEGER,
    plan_id INTEGER,
    variables TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    provider_message_id TEXT,
    actual_cost_nanos INTEGER,
    updated_at REAL,
    delivery_state TEXT,
    delivery_status TEXT,
    delivered_at REAL,
    delivery_reason TEXT,
    worker TEXT,
    PRIMARY KEY (campaign_id, line)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_cache (
    provider TEXT PRIMARY KEY,
    fetched_at REAL NOT NULL,
    rows TEXT NOT NULL
);
-- With the provider, a lane's feeder (and delivery polling) reads only its own provider's
-- rows in line order; by state alone each of five lanes stepped through every pending row.
CREATE INDEX IF NOT EXISTS messages_by_state ON messages (campaign_id, state, provider);
CREATE INDEX IF NOT EXISTS messages_provider_id ON messages (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- The few messages whose delivery report never came: a poll round counts what still awaits
-- one as the accepted (from messages_by_state alone) less these, not by reading every row.
CREATE INDEX IF NOT EXISTS messages_unknown_delivery ON messages (campaign_id, provider)
    WHERE delivery_reason = 'unknown_delivery';
CREATE TABLE IF NOT EXISTS delivery_reports (
    provider TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    state TEXT NOT NULL,
    provider_status TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL,
    received_at REAL NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, provider_message_id, state)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivery_reports_unapplied ON delivery_reports (received_at)
    WHERE applied = 0;
-- Every process sending a campaign (engine.send.worker). By the campaign's name, so that a
-- run holds it before its plan creates the campaign's row; any number a campaign.
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    campaign TEXT NOT NULL,
    host TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_started INTEGER,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS workers_by_campaign ON workers (campaign);
-- Each process's share of a provider's rate limit (engine.store.rate_shares): the counted
-- shares of a provider sum to at most its limit's count. By the provider's name in config.
CREATE TABLE IF NOT EXISTS rate_shares (
    provider TEXT NOT NULL,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_started INTEGER,
    joined_at REAL NOT NULL,
    share INTEGER NOT NULL,
    counted INTEGER NOT NULL,
    counted_until REAL NOT NULL,
    seen_at REAL NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    wants INTEGER NOT NULL DEFAULT 1,
    demand INTEGER,
    PRIMARY KEY (provider, holder)
) WITHOUT ROWID;

-- upgrade_from_2 --
-- Schema 2 to 3: the delivery columns.
ALTER TABLE messages ADD COLUMN delivery_state TEXT;
ALTER TABLE messages ADD COLUMN delivery_status TEXT;
ALTER TABLE messages ADD COLUMN delivered_at REAL;
ALTER TABLE messages ADD COLUMN delivery_reason TEXT;

-- upgrade_from_3 --
-- Schema 3 to 4: the index by state alone goes (messages_by_state has the provider too).
DROP INDEX IF EXISTS messages_state;

-- upgrade_from_4 --
-- Schema 4 to 5: the workers table, which the schema creates; nothing else.

-- upgrade_from_5 --
-- Schema 5 to 6: any number of workers a campaign, a message's holder, committed money.
DROP INDEX IF EXISTS workers_one_per_campaign;
ALTER TABLE messages ADD COLUMN worker TEXT;
ALTER TABLE campaigns ADD COLUMN committed_nanos INTEGER;

-- upgrade_from_6 --
-- Schema 6 to 7: the rate_shares table as schema 7 had it (upgrade_from_7 adds to it).
CREATE TABLE IF NOT EXISTS rate_shares (
    provider TEXT NOT NULL,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_started INTEGER,
    joined_at REAL NOT NULL,
    share INTEGER NOT NULL,
    counted INTEGER NOT NULL,
    counted_until REAL NOT NULL,
    seen_at REAL NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, holder)
) WITHOUT ROWID;

-- upgrade_from_7 --
-- Schema 7 to 8: whether a rate share's holder wants its provider (shares follow demand);
-- a row of an older process counts as wanting, as every holder did.
ALTER TABLE rate_shares ADD COLUMN wants INTEGER NOT NULL DEFAULT 1;

-- upgrade_from_8 --
-- Schema 8 to 9: how many requests a window a rate share's holder wants (NULL: as many as it
-- can get, as every holder did).
ALTER TABLE rate_shares ADD COLUMN demand INTEGER;
